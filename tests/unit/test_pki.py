"""shell/state/pki.py + ca.py: the cluster's CA and certificates in the state dir (real
`cryptography`, files under tmp_path, no processes)."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha_operator.core import topology
from pgha_operator.core.spec import Cluster, load
from pgha_operator.shell.state import StateError
from pgha_operator.shell.state.pki import Issued, load_or_issue, read_material

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DEMO = yaml.safe_load(Path("manifests/demo.yaml").read_text())


def manifest(tmp_path: Path, balancers: int = 1, tls: dict | None = None) -> Cluster:
    doc = yaml.safe_load(yaml.safe_dump(DEMO))
    lb = doc["spec"]["loadBalancer"]
    lb["instances"] = balancers
    lb["machines"] = [
        {"name": f"haproxy{i}" if i else "haproxy", "address": f"127.0.10.{201 + i}"}
        for i in range(balancers)
    ]
    if tls is not None:
        doc["spec"]["tls"] = tls
    path = tmp_path / "manifests" / "demo.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return load([path])[0].cluster


def issue(state: Path, cluster: Cluster, now: datetime = NOW) -> Issued:
    return load_or_issue(state, cluster, topology.build(cluster), now)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def pems(state: Path) -> dict[str, bytes]:
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*.*"))}


def verify(leaf: x509.Certificate, ca: x509.Certificate, now: datetime) -> None:
    """The chain a TLS peer checks: signature, issuer, validity at `now`."""
    leaf.verify_directly_issued_by(ca)
    assert leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc


def usages(c: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


# --- a first call, a second call ------------------------------------------------------------


def test_first_call_issues_the_ca_and_every_certificate(tmp_path: Path) -> None:
    cluster = manifest(tmp_path)
    issued = issue(tmp_path / "state", cluster)
    tls = tmp_path / "state" / "tls"
    assert stat.S_IMODE((tls / "ca.key").stat().st_mode) == 0o600
    ca = cert(tls / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = [m.name for m in topology.build(cluster).machines]
    assert sorted(p.stem for p in (tls / "machines").glob("*.crt")) == sorted(names)
    for stem in [f"machines/{n}" for n in names] + ["patroni-etcd", "operator"]:
        verify(cert(tls / f"{stem}.crt"), ca, NOW)
        assert stat.S_IMODE((tls / f"{stem}.key").stat().st_mode) == 0o600
    assert {name for name, _ in issued.renewed} == {*names, "patroni-etcd", "operator"}
    assert issued.not_after == NOW + timedelta(days=90)
    assert issued.material.ca_cert == (tls / "ca.crt").read_text()
    assert issued.client.cert == str(tls / "operator.crt")


def test_second_call_returns_the_very_same_pem_text(tmp_path: Path) -> None:
    cluster, state = manifest(tmp_path), tmp_path / "state"
    first = issue(state, cluster)
    files = pems(state)
    again = issue(state, cluster, NOW + timedelta(days=30))
    assert again.material == first.material
    assert again.renewed == ()
    assert pems(state) == files
    assert read_material(state, topology.build(cluster)) == first.material


def test_sans_hold_the_name_the_address_and_every_load_balancer(tmp_path: Path) -> None:
    cluster = manifest(tmp_path, balancers=2)
    issue(tmp_path / "state", cluster)
    san = cert(tmp_path / "state/tls/machines/node1.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["node1"]
    ips = set(san.value.get_values_for_type(x509.IPAddress))
    node1 = topology.build(cluster).address("node1")
    # And 127.0.0.1: machines on loopback connect from it, and etcd checks a peer's
    # certificate against the address its connection comes from.
    wanted = (node1, "127.0.10.201", "127.0.10.202", "127.0.0.1")
    assert ips == {ipaddress.ip_address(a) for a in wanted}


def test_machines_serve_and_log_in_clients_only_log_in(tmp_path: Path) -> None:
    issue(tmp_path / "state", manifest(tmp_path))
    tls = tmp_path / "state" / "tls"
    server_and_client = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for name in ("etcd1", "node1", "haproxy"):
        assert usages(cert(tls / "machines" / f"{name}.crt")) == server_and_client
    for name in ("patroni-etcd", "operator"):
        c = cert(tls / f"{name}.crt")
        assert usages(c) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name


# --- renewal --------------------------------------------------------------------------------


def test_only_the_certificate_that_is_due_is_renewed(tmp_path: Path) -> None:
    cluster, state = manifest(tmp_path), tmp_path / "state"
    issue(state, cluster)
    # node1 made 30 days later: it ends 30 days after the others
    node1 = state / "tls/machines/node1"
    node1.with_suffix(".crt").unlink()
    issue(state, cluster, NOW + timedelta(days=30))
    before = pems(state)
    # 84 days on: the first batch is within 7 days of its end, node1 is not
    later = NOW + timedelta(days=84)
    renewed = issue(state, cluster, later)
    assert "node1" not in {n for n, _ in renewed.renewed}
    assert {n for n, _ in renewed.renewed} == {"etcd1", "etcd2", "etcd3", "haproxy"} | {
        "node2",
        "node3",
        "patroni-etcd",
        "operator",
    }
    assert all(why == "expires in 6.0 days" for _, why in renewed.renewed)
    after = pems(state)
    assert after["tls/machines/node1.crt"] == before["tls/machines/node1.crt"]
    assert after["tls/ca.crt"] == before["tls/ca.crt"]
    assert after["tls/ca.key"] == before["tls/ca.key"]
    ca = cert(state / "tls/ca.crt")
    for name in ("etcd1", "node2"):
        new = cert(state / f"tls/machines/{name}.crt")
        verify(new, ca, later)
        assert new.not_valid_after_utc == later + timedelta(days=90)


def test_renew_before_days_is_honoured(tmp_path: Path) -> None:
    cluster = manifest(tmp_path, tls={"certificateDays": 30, "renewBeforeDays": 10})
    state = tmp_path / "state"
    assert issue(state, cluster).not_after == NOW + timedelta(days=30)
    assert issue(state, cluster, NOW + timedelta(days=19)).renewed == ()
    every = len(topology.build(cluster).machines) + 2  # the machines and the two clients
    assert len(issue(state, cluster, NOW + timedelta(days=20)).renewed) == every


def test_an_expired_certificate_is_renewed(tmp_path: Path) -> None:
    cluster, state = manifest(tmp_path), tmp_path / "state"
    issue(state, cluster)
    renewed = issue(state, cluster, NOW + timedelta(days=100))
    assert {why for _, why in renewed.renewed} == {"expired"}


def test_a_new_load_balancer_reissues_the_machine_certificates(tmp_path: Path) -> None:
    state = tmp_path / "state"
    issue(state, manifest(tmp_path, balancers=1))
    client = (state / "tls/operator.crt").read_bytes()
    renewed = issue(state, manifest(tmp_path, balancers=2), NOW + timedelta(days=1))
    reasons = dict(renewed.renewed)
    assert reasons.pop("haproxy1") == "missing"  # the new machine
    assert set(reasons.values()) == {"names changed"}
    assert "operator" not in reasons and "patroni-etcd" not in reasons
    assert (state / "tls/operator.crt").read_bytes() == client
    san = cert(state / "tls/machines/etcd1.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert ipaddress.ip_address("127.0.10.202") in san.value.get_values_for_type(x509.IPAddress)


def test_a_removed_machine_keeps_no_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    issue(state, manifest(tmp_path, balancers=2))
    assert (state / "tls/machines/haproxy1.key").exists()
    issue(state, manifest(tmp_path, balancers=1))
    assert not (state / "tls/machines/haproxy1.key").exists()
    assert not (state / "tls/machines/haproxy1.crt").exists()


@pytest.mark.parametrize(
    ("damage", "suffix"),
    [
        (b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n", ".crt"),
        (b"", ".crt"),
        (b"not a key", ".key"),
    ],
)
def test_a_damaged_file_is_reissued(tmp_path: Path, damage: bytes, suffix: str) -> None:
    cluster, state = manifest(tmp_path), tmp_path / "state"
    issue(state, cluster)
    (state / "tls/machines/node2").with_suffix(suffix).write_bytes(damage)
    renewed = issue(state, cluster)
    assert renewed.renewed == (("node2", "missing"),)
    verify(cert(state / "tls/machines/node2.crt"), cert(state / "tls/ca.crt"), NOW)


def test_a_key_of_another_certificate_is_reissued(tmp_path: Path) -> None:
    """A renewal cut between its two writes: the new key beside the old certificate."""
    cluster, state = manifest(tmp_path), tmp_path / "state"
    issue(state, cluster)
    other = (state / "tls/machines/node3.key").read_bytes()
    (state / "tls/machines/node2.key").write_bytes(other)
    assert issue(state, cluster).renewed == (("node2", "missing"),)


# --- the CA ---------------------------------------------------------------------------------


def test_half_a_ca_is_refused_not_replaced(tmp_path: Path) -> None:
    cluster, state = manifest(tmp_path), tmp_path / "state"
    issue(state, cluster)
    ca = (state / "tls/ca.crt").read_bytes()
    (state / "tls/ca.key").unlink()
    with pytest.raises(StateError, match=r"ca\.key: cannot be read"):
        issue(state, cluster)
    assert (state / "tls/ca.crt").read_bytes() == ca


def make_ca(folder: Path, name: str = "brought", is_ca: bool = True) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    c = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_brought_ca_signs_and_its_key_stays_where_it_is(tmp_path: Path) -> None:
    cert_path, key_path = make_ca(tmp_path / "pki")
    cluster = manifest(tmp_path, tls={"ca": {"cert": str(cert_path), "key": str(key_path)}})
    state = tmp_path / "state"
    issue(state, cluster)
    assert (state / "tls/ca.crt").read_bytes() == cert_path.read_bytes()
    assert not (state / "tls/ca.key").exists()
    ca = cert(cert_path)
    for name in ("node1", "etcd2"):
        verify(cert(state / f"tls/machines/{name}.crt"), ca, NOW)
    assert issue(state, cluster).renewed == ()


def test_relative_ca_paths_are_relative_to_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_ca(tmp_path / "manifests" / "pki")
    monkeypatch.chdir("/")
    cluster = manifest(
        tmp_path, tls={"ca": {"cert": "pki/brought.crt", "key": "./pki/brought.key"}}
    )
    assert cluster.spec.tls.ca is not None
    assert cluster.spec.tls.ca.cert == str(tmp_path / "manifests/pki/brought.crt")
    assert cluster.spec.tls.ca.key == str(tmp_path / "manifests/pki/brought.key")
    issue(tmp_path / "state", cluster)
    verify(
        cert(tmp_path / "state/tls/machines/node1.crt"),
        cert(tmp_path / "manifests/pki/brought.crt"),
        NOW,
    )


def test_a_relative_path_that_reached_the_state_dir_is_refused(tmp_path: Path) -> None:
    """Only loading knows the manifest's folder; a Cluster made without it must not guess."""
    doc = yaml.safe_load(yaml.safe_dump(DEMO))
    doc["spec"]["tls"] = {"ca": {"cert": "ca.crt", "key": "ca.key"}}
    cluster = Cluster.model_validate(doc)
    with pytest.raises(StateError, match="ca.crt: is a relative path"):
        issue(tmp_path / "state", cluster)


@pytest.mark.parametrize(
    ("break_it", "names", "reason"),
    [
        ("no cert", "brought.crt", "cannot be read"),
        ("no key", "brought.key", "cannot be read"),
        ("cert garbage", "brought.crt", "is not a PEM certificate"),
        ("key garbage", "brought.key", "is not a PEM key"),
        ("other key", "brought.key", "is not the key of the CA in"),
        ("not a CA", "leaf.crt", "is not a CA certificate"),
    ],
)
def test_a_brought_ca_that_cannot_be_used_names_the_file(
    tmp_path: Path, break_it: str, names: str, reason: str
) -> None:
    pki = tmp_path / "pki"
    cert_path, key_path = make_ca(pki)
    match break_it:
        case "no cert":
            cert_path.unlink()
        case "no key":
            key_path.unlink()
        case "cert garbage":
            cert_path.write_text("hello")
        case "key garbage":
            key_path.write_text("hello")
        case "other key":
            key_path.write_bytes(make_ca(pki, "other")[1].read_bytes())
        case "not a CA":
            cert_path, key_path = make_ca(pki, "leaf", is_ca=False)
    cluster = manifest(tmp_path, tls={"ca": {"cert": str(cert_path), "key": str(key_path)}})
    with pytest.raises(StateError) as caught:
        issue(tmp_path / "state", cluster)
    assert str(caught.value).startswith(str(pki / names) + ": " + reason)
    assert not (tmp_path / "state/tls/machines").exists()


def test_a_brought_ca_is_never_swapped_for_another(tmp_path: Path) -> None:
    cert_path, key_path = make_ca(tmp_path / "pki")
    state = tmp_path / "state"
    issue(state, manifest(tmp_path, tls={"ca": {"cert": str(cert_path), "key": str(key_path)}}))
    node1 = (state / "tls/machines/node1.crt").read_bytes()
    make_ca(tmp_path / "pki")  # another CA written over the same files
    with pytest.raises(StateError, match="holds the CA this cluster was made with"):
        issue(state, manifest(tmp_path, tls={"ca": {"cert": str(cert_path), "key": str(key_path)}}))
    assert (state / "tls/machines/node1.crt").read_bytes() == node1


def test_leaves_end_with_the_ca_and_do_not_churn(tmp_path: Path) -> None:
    """A brought CA ending in 3 days: certificates end with it, are not reissued every
    call, and not_after says when (status turns Expiring)."""
    cert_path, key_path = make_ca(tmp_path / "pki")
    cluster = manifest(tmp_path, tls={"ca": {"cert": str(cert_path), "key": str(key_path)}})
    state = tmp_path / "state"
    late = cert(cert_path).not_valid_after_utc - timedelta(days=3)
    first = issue(state, cluster, late)
    assert first.not_after == cert(cert_path).not_valid_after_utc
    assert issue(state, cluster, late + timedelta(hours=1)).renewed == ()


def test_only_machines_on_loopback_name_127_0_0_1() -> None:
    from pgha_operator.shell.state.pki import _loopback_source

    assert _loopback_source("127.0.10.11") == ["127.0.0.1"]
    assert _loopback_source("10.0.0.11") == []

"""The cluster's CA and certificates, issued with `cryptography` into `<state>/tls/`.

    tls/ca.crt, ca.key (0600)         the cluster's CA (shell/state/ca.py); a brought CA's
                                      certificate is copied here, its key is not
    tls/machines/<m>.crt, .key        each machine's pair (serverAuth + clientAuth)
    tls/patroni-etcd.crt, .key        Patroni's etcd client certificate
    tls/operator.crt, .key            the operator's client certificate (never leaves here)

A certificate is issued when it is missing, signed by another CA, within renew-before of
its end, or lacks a name it must carry (core/tls.py decides); otherwise the same PEM text
comes back, so rendering sees no change. Keys are ECDSA P-256: small, fast to make, and
read by PostgreSQL, etcd, HAProxy and Patroni alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha_operator.core.spec import Cluster
from pgha_operator.core.tls import (
    OPERATOR_CLIENT,
    PATRONI_ETCD_CLIENT,
    CertInfo,
    CertWanted,
    KeyPair,
    TlsMaterial,
    reissue_reason,
)
from pgha_operator.core.topology import Topology
from pgha_operator.shell.clients.tls import ClientTls
from pgha_operator.shell.state.atomic import write_atomic
from pgha_operator.shell.state.ca import (
    CERT_MODE,
    CLOCK_SKEW,
    KEY_MODE,
    key_pem,
    key_usage,
    load_or_make_ca,
)
from pgha_operator.shell.state.errors import StateError

DIR_NAME = "tls"
MACHINES = "machines"


@dataclass(frozen=True)
class Issued:
    material: TlsMaterial
    client: ClientTls
    not_after: datetime  # the earliest end of any certificate the cluster uses
    renewed: tuple[tuple[str, str], ...]  # (certificate, why) issued by this call


def client_files(state: Path) -> ClientTls:
    """The operator's own files, for its clients (etcd, Patroni, PostgreSQL)."""
    folder = state / DIR_NAME
    return ClientTls(
        str(folder / "ca.crt"), str(folder / "operator.crt"), str(folder / "operator.key")
    )


def load_or_issue(state: Path, cluster: Cluster, topo: Topology, now: datetime) -> Issued:
    """The cluster's certificates, issuing what is missing or due. Raises StateError when
    the CA cannot be read (a brought CA's files, a damaged key)."""
    folder = state / DIR_NAME
    ca_cert, ca_key = load_or_make_ca(folder, cluster, now)
    tls = cluster.spec.tls
    leaves = _Leaves(
        _Issuer(ca_cert, ca_key, now, timedelta(days=tls.certificate_days)),
        timedelta(days=tls.renew_before_days),
        [ca_cert.not_valid_after_utc],
    )
    # Clients name a load balancer (or the VIP in front of them) and verify the node's
    # certificate through it: every server certificate holds those addresses.
    balancers = [topo.address(name) for name in topo.loadbalancers]
    if vip := cluster.spec.load_balancer.vip:
        balancers.append(str(vip.address))
    servers = {
        m.name: leaves.pair(
            folder / MACHINES / m.name,
            m.name,
            [m.name, topo.address(m.name), *balancers, *_loopback_source(topo.address(m.name))],
            server=True,
        )
        for m in topo.machines
    }
    _forget_machines(folder / MACHINES, set(servers))
    patroni = leaves.pair(folder / PATRONI_ETCD_CLIENT, PATRONI_ETCD_CLIENT, [], server=False)
    leaves.pair(folder / OPERATOR_CLIENT, OPERATOR_CLIENT, [], server=False)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return Issued(
        TlsMaterial.build(ca_pem, servers, patroni),
        client_files(state),
        min(leaves.ends),
        tuple(leaves.renewed),
    )


def _loopback_source(address: str) -> list[str]:
    """etcd accepts a peer only when the peer's certificate names the address its
    connection comes from; machines on the host's loopback network (the local provider)
    all connect from 127.0.0.1."""
    return ["127.0.0.1"] if ipaddress.ip_address(address).is_loopback else []


@dataclass
class _Leaves:
    """Each certificate as it is, or issued again when core/tls.py says it must be."""

    issuer: _Issuer
    renew_before: timedelta
    ends: list[datetime]
    renewed: list[tuple[str, str]] = field(default_factory=list)

    def pair(self, stem: Path, common_name: str, names: Iterable[str], server: bool) -> KeyPair:
        ca = self.issuer.ca_cert
        want = _wanted(common_name, names, ca.fingerprint(hashes.SHA256()).hex())
        have = _read_pair(stem, ca)
        info = have[2] if have else None
        why = reissue_reason(info, want, self.issuer.now, self.renew_before)
        if why and info and info.not_after >= ca.not_valid_after_utc:
            # As late as the CA allows: a new one would end no later (status says Expiring).
            why = reissue_reason(info, want, self.issuer.now, timedelta(0))
        if why is not None or have is None:
            have = self.issuer.issue(stem, common_name, want, server)
            self.renewed.append((stem.name, why or "missing"))
        self.ends.append(have[2].not_after)
        return KeyPair(have[0], have[1])


def _forget_machines(folder: Path, machines: set[str]) -> None:
    """A machine gone from the topology keeps no key here (a later one of the same name
    gets a fresh pair)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.suffix in (".crt", ".key") and path.stem not in machines:
            path.unlink()


def created_before_tls(state: Path, cluster: str) -> StateError:
    """A cluster this state dir made before certificates existed: its daemons speak plain
    text, and switching them all at once would cut every connection. Refused, untouched."""
    return StateError(
        state / DIR_NAME,
        f"is missing: cluster {cluster} was created by a pgha-operator without TLS and "
        "still runs in plain text; this version does not convert it in place",
        (
            f"Cluster {cluster} keeps running as it is; keep managing it with the "
            "pgha-operator version that created it, or move it to TLS: "
            "(1) create a new cluster with this version under another metadata.name and "
            "--state-dir; "
            f"(2) stop the writers, then copy the data: `pg_dumpall -h <{cluster}'s load "
            "balancer> -p 5000 -U postgres | psql -h <the new primary> -p 5432 -U postgres` "
            "(the passwords: superuser_password in each state dir's secrets.yaml; the new "
            "primary's address: `pgha-operator status`); "
            "(3) point the clients at `pgha-operator dsn` of the new cluster; "
            f"(4) destroy {cluster} with the version that created it (docs/security.md)"
        ),
    )


def read_material(state: Path, topo: Topology) -> TlsMaterial | None:
    """For read-only commands: the issued certificates as they are, None when any is
    missing (before the first apply). Issues nothing."""
    folder = state / DIR_NAME
    try:
        ca_pem = (folder / "ca.crt").read_text()
        servers = {m.name: _pem_pair(folder / MACHINES / m.name) for m in topo.machines}
        patroni = _pem_pair(folder / PATRONI_ETCD_CLIENT)
    except FileNotFoundError:
        return None
    return TlsMaterial.build(ca_pem, servers, patroni)


def earliest_end(state: Path) -> datetime | None:
    """For read-only commands: when the first certificate under tls/ ends (the CA's
    included), None when none is there. A damaged file counts as ended now: it will be
    issued again, and until then nothing can use it."""
    ends = []
    for path in sorted((state / DIR_NAME).rglob("*.crt")):
        try:
            ends.append(x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc)
        except (OSError, ValueError):
            ends.append(now_utc())
    return min(ends, default=None)


def _pem_pair(stem: Path) -> KeyPair:
    return KeyPair(stem.with_suffix(".crt").read_text(), stem.with_suffix(".key").read_text())


# --- leaf certificates ----------------------------------------------------------------------------


def _wanted(common_name: str, names: Iterable[str], ca_fingerprint: str) -> CertWanted:
    dns, ips = {common_name}, set()
    for name in names:
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name)
    return CertWanted(frozenset(dns), frozenset(ips), ca_fingerprint)


def _read_pair(stem: Path, ca: x509.Certificate) -> tuple[str, str, CertInfo] | None:
    """An issued pair as it is on disk; None when missing or damaged (issued again)."""
    try:
        cert_pem = stem.with_suffix(".crt").read_text()
        key_pem = stem.with_suffix(".key").read_text()
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return None
    if cert.public_key() != key.public_key():
        return None  # a half-written renewal: the key of another certificate
    return cert_pem, key_pem, cert_info(cert, ca)


def cert_info(cert: x509.Certificate, ca: x509.Certificate) -> CertInfo:
    """What a certificate says, and whether `ca` signed it (its fingerprint if so)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = frozenset(san.get_values_for_type(x509.DNSName))
        ips = frozenset(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = frozenset(), frozenset()
    try:
        cert.verify_directly_issued_by(ca)
        issuer = ca.fingerprint(hashes.SHA256()).hex()
    except (ValueError, TypeError, InvalidSignature):
        issuer = ""
    return CertInfo(cert.not_valid_after_utc, dns, ips, issuer)


@dataclass
class _Issuer:
    ca_cert: x509.Certificate
    ca_key: CertificateIssuerPrivateKeyTypes
    now: datetime
    validity: timedelta

    def issue(
        self, stem: Path, common_name: str, want: CertWanted, server: bool
    ) -> tuple[str, str, CertInfo]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(want.dns_names)]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(want.ip_addresses)]
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - CLOCK_SKEW)
            .not_valid_after(min(self.now + self.validity, self.ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_pem, key_text = cert.public_bytes(serialization.Encoding.PEM), key_pem(key)
        stem.parent.mkdir(parents=True, exist_ok=True)
        # The key first (a certificate without its key is useless); a pair caught between
        # the two writes reads as mismatched and is issued again.
        write_atomic(stem.with_suffix(".key"), key_text, KEY_MODE)
        write_atomic(stem.with_suffix(".crt"), cert_pem, CERT_MODE)
        return cert_pem.decode(), key_text.decode(), cert_info(cert, self.ca_cert)

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        """Names the signing CA's key (a brought CA may lack a SubjectKeyIdentifier)."""
        try:
            ski = self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key())


def now_utc() -> datetime:
    return datetime.now(UTC)

"""The cluster's CA and certificates, issued with `cryptography` into `<state>/tls/`.

    tls/ca.crt, ca.key (0600)         the cluster's CA (or copies of the one spec.tls.ca names)
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha_operator.core.spec import Cluster
from pgha_operator.core.tls import (
    CA_VALIDITY_DAYS,
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
from pgha_operator.shell.state.errors import StateError

DIR_NAME = "tls"
KEY_MODE = 0o600
CERT_MODE = 0o644
CLOCK_SKEW = timedelta(minutes=5)  # valid a little before "now": machines' clocks differ


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
    ca_cert, ca_key = _ca(folder, cluster, now)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    fingerprint = ca_cert.fingerprint(hashes.SHA256()).hex()
    tls = cluster.spec.tls
    issuer = _Issuer(ca_cert, ca_key, now, timedelta(days=tls.certificate_days))
    renew_before = timedelta(days=tls.renew_before_days)
    balancers = [topo.address(name) for name in topo.loadbalancers]
    renewed: list[tuple[str, str]] = []
    ends: list[datetime] = [ca_cert.not_valid_after_utc]

    def pair(stem: Path, common_name: str, names: Iterable[str], server: bool) -> KeyPair:
        want = _wanted(common_name, names, fingerprint)
        have = _read_pair(stem, ca_cert)
        reason = reissue_reason(have[2] if have else None, want, now, renew_before)
        if reason is not None:
            have = issuer.issue(stem, common_name, want, server)
            renewed.append((stem.name, reason))
        assert have is not None
        ends.append(have[2].not_after)
        return KeyPair(have[0], have[1])

    servers = {
        m.name: pair(
            folder / "machines" / m.name,
            m.name,
            [m.name, topo.address(m.name), *balancers],
            server=True,
        )
        for m in topo.machines
    }
    patroni = pair(folder / PATRONI_ETCD_CLIENT, PATRONI_ETCD_CLIENT, [], server=False)
    pair(folder / OPERATOR_CLIENT, OPERATOR_CLIENT, [], server=False)
    return Issued(
        TlsMaterial.build(ca_pem, servers, patroni),
        client_files(state),
        min(ends),
        tuple(renewed),
    )


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
        servers = {m.name: _pem_pair(folder / "machines" / m.name) for m in topo.machines}
        patroni = _pem_pair(folder / PATRONI_ETCD_CLIENT)
    except FileNotFoundError:
        return None
    return TlsMaterial.build(ca_pem, servers, patroni)


def _pem_pair(stem: Path) -> KeyPair:
    return KeyPair(stem.with_suffix(".crt").read_text(), stem.with_suffix(".key").read_text())


# --- the CA -------------------------------------------------------------------------------------


def _ca(
    folder: Path, cluster: Cluster, now: datetime
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    brought = cluster.spec.tls.ca
    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    if brought is not None:
        cert_pem = _read(Path(brought.cert), "spec.tls.ca.cert")
        key_pem = _read(Path(brought.key), "spec.tls.ca.key")
        cert, key = _parse_ca(cert_pem, key_pem, Path(brought.cert))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not cert_path.exists() or cert_path.read_bytes() != cert_pem:
            write_atomic(cert_path, cert_pem, CERT_MODE)
        return cert, key
    if cert_path.exists() and key_path.exists():
        return _parse_ca(cert_path.read_bytes(), key_path.read_bytes(), cert_path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pgha {cluster.name} CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, _key_pem(key), KEY_MODE)  # the key first: a cert alone is useless
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    return cert, key


def _parse_ca(
    cert_pem: bytes, key_pem: bytes, where: Path
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise StateError(where, f"is not a usable CA ({exc})", "check the CA's files") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise StateError(where, "holds a CA key of an unsupported type", "use EC or RSA")
    if cert.public_key() != key.public_key():
        raise StateError(where, "certificate and key do not belong together", "check both files")
    return cert, key


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StateError(path, f"cannot be read ({exc.strerror})", f"fix {field}") from None


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
    try:
        cert_pem = stem.with_suffix(".crt").read_text()
        key_pem = stem.with_suffix(".key").read_text()
    except FileNotFoundError:
        return None
    try:
        return cert_pem, key_pem, cert_info(x509.load_pem_x509_certificate(cert_pem.encode()), ca)
    except ValueError:
        return None  # damaged: issue it again


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
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - CLOCK_SKEW)
            .not_valid_after(min(self.now + self.validity, self.ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        stem.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(stem.with_suffix(".key"), _key_pem(key), KEY_MODE)
        write_atomic(stem.with_suffix(".crt"), cert_pem, CERT_MODE)
        return cert_pem.decode(), _key_pem(key).decode(), cert_info(cert, self.ca_cert)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def now_utc() -> datetime:
    return datetime.now(UTC)

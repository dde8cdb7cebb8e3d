"""A throwaway CA and certificates for tests that start daemons by hand (not through the
operator, whose certificates come from shell/state/pki.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha_operator.shell.clients.tls import ClientTls

VALIDITY = timedelta(days=1)


@dataclass(frozen=True)
class LabCa:
    folder: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_path(self) -> str:
        return str(self.folder / "ca.crt")

    @classmethod
    def create(cls, folder: Path, name: str = "pgha test CA") -> LabCa:
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(folder, cert, key)

    def issue(self, stem: str, ips: tuple[str, ...] = (), server: bool = True) -> ClientTls:
        """`<folder>/<stem>.crt|.key` (serverAuth + clientAuth, or clientAuth only), with
        this CA as `ca`: the triple a client or a server is started with."""
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        now = datetime.now(UTC)
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] or [x509.DNSName(stem)]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        crt, pem_key = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem_key.touch(mode=0o600)
        pem_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return ClientTls(self.cert_path, str(crt), str(pem_key))

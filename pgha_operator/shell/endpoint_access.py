"""Who may read `run --listen`: open on loopback, token + TLS anywhere else.

One operator may serve many clusters, so the token and the endpoint's certificate are the
operator's, not a cluster's: they live in the operator directory (default `_operator` next
to the clusters' state dirs; a cluster name cannot start with `_`):

    token          0600  the bearer token (`pgha-operator token` prints it)
    endpoint.crt   0644  the endpoint's self-signed certificate (clients pin it)
    endpoint.key   0600  its key
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.providers.local import default_state_dir
from pgha_operator.shell.state.atomic import write_atomic

OPERATOR_DIR_NAME = "_operator"
TOKEN_FILE = "token"
CERT_FILE = "endpoint.crt"
KEY_FILE = "endpoint.key"
SECRET_MODE = 0o600
CERT_VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Access:
    """What a protected endpoint needs: the token every request must carry, and TLS."""

    token: str
    tls: ssl.SSLContext


def default_operator_dir() -> Path:
    """Next to the state dirs: /var/lib/pgha-operator/_operator as root."""
    return default_state_dir(OPERATOR_DIR_NAME)


def is_loopback(host: str) -> bool:
    """Only a loopback address stays open; 0.0.0.0 and every other address are protected."""
    return ipaddress.ip_address(host).is_loopback


def access_for(host: str, operator_dir: Path, force: bool = False) -> Access | None:
    """None (open, plain HTTP) on loopback unless `force`; token + TLS otherwise."""
    if is_loopback(host) and not force:
        return None
    ensure_dir(operator_dir)
    cert, key = ensure_certificate(operator_dir, host)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(cert, key)
    return Access(load_or_create_token(operator_dir), tls)


def ensure_dir(operator_dir: Path) -> None:
    try:
        operator_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise PermanentError(
            f"cannot create the operator directory {operator_dir}: {exc.strerror}"
        ) from exc


def load_or_create_token(operator_dir: Path) -> str:
    """The operator's bearer token, made once (secrets.token_urlsafe) and kept 0600."""
    path = operator_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if not token:
            raise PermanentError(f"{path}: the token file is empty; delete it to make a new one")
        return token
    ensure_dir(operator_dir)
    token = secrets.token_urlsafe(32)
    write_atomic(path, f"{token}\n".encode(), mode=SECRET_MODE)
    return token


def ensure_certificate(operator_dir: Path, host: str) -> tuple[Path, Path]:
    """The endpoint's certificate and key; issued again when missing, ending within
    RENEW_BEFORE, or not naming `host` (the address clients connect to)."""
    cert_path, key_path = operator_dir / CERT_FILE, operator_dir / KEY_FILE
    names = endpoint_names(host)
    if cert_path.exists() and key_path.exists() and certificate_fits(cert_path, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, names, datetime.now(UTC))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(key_path, key_pem, mode=SECRET_MODE)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def endpoint_names(host: str) -> list[x509.GeneralName]:
    """The names a client may use: the host name, and the address unless it is 0.0.0.0."""
    names: list[x509.GeneralName] = [x509.DNSName(socket.gethostname()), x509.DNSName("localhost")]
    address = ipaddress.ip_address(host)
    if not address.is_unspecified:
        names.append(x509.IPAddress(address))
    return names


def certificate_fits(path: Path, names: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False  # damaged or foreign: issue a new one
    fresh = cert.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE
    return fresh and all(name in san for name in names)


def self_signed(
    key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName], now: datetime
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgha-operator endpoint")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def token_matches(authorization: str | None, token: str) -> bool:
    """`Bearer <token>`, or HTTP Basic with the token as password (what a browser sends
    after its login prompt; any user name). Compared in constant time."""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        value = _basic_password(value)
    elif scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(value.encode(), token.encode())


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]

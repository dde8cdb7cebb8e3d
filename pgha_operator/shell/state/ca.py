"""The cluster's CA: made once into `<state>/tls/ca.crt|ca.key` (key 0600), or the one the
user brings with spec.tls.ca (its certificate copied there, its key read where it is).

A CA is never replaced behind the user's back: a state dir holding half a CA, a brought
file that is not a CA, a key that is not the certificate's, or a brought CA other than the
one the cluster was made with is a StateError naming the file; nothing is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from pgha_operator.core.spec import Cluster
from pgha_operator.core.tls import CA_VALIDITY_DAYS
from pgha_operator.shell.state.atomic import write_atomic
from pgha_operator.shell.state.errors import StateError

KEY_MODE = 0o600
CERT_MODE = 0o644
CLOCK_SKEW = timedelta(minutes=5)  # valid a little before "now": machines' clocks differ

CaPair = tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]


def load_or_make_ca(folder: Path, cluster: Cluster, now: datetime) -> CaPair:
    """The CA that signs the cluster's certificates: brought, already made, or made now."""
    if cluster.spec.tls.ca is not None:
        return _brought_ca(folder, Path(cluster.spec.tls.ca.cert), Path(cluster.spec.tls.ca.key))
    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    if cert_path.exists() or key_path.exists():
        # One without the other is a damaged state dir, never a reason for a new CA: every
        # certificate would change at once and the daemons would stop trusting each other.
        cert_text = _read(cert_path, "the state dir's CA certificate")
        key_text = _read(key_path, "the state dir's CA key")
        return _parse_ca(cert_text, cert_path, key_text, key_path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = _new_ca(cluster.name, now)
    write_atomic(key_path, key_pem(key), KEY_MODE)  # the key first: a cert alone is useless
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    return cert, key


def _brought_ca(folder: Path, cert_path: Path, key_path: Path) -> CaPair:
    """The user's CA: its certificate is copied into the state dir (read-only commands and
    the machines use the copy); its key is read where it is and never copied."""
    for path, name in ((cert_path, "cert"), (key_path, "key")):
        if not path.is_absolute():  # spec loading resolves them against the manifest's folder
            raise StateError(path, "is a relative path", f"make spec.tls.ca.{name} absolute")
    cert_pem = _read(cert_path, "spec.tls.ca.cert")
    cert, key = _parse_ca(cert_pem, cert_path, _read(key_path, "spec.tls.ca.key"), key_path)
    copy = folder / "ca.crt"
    if copy.exists():
        _same_ca_as_before(cert, copy)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not copy.exists() or copy.read_bytes() != cert_pem:
        write_atomic(copy, cert_pem, CERT_MODE)
    return cert, key


def _same_ca_as_before(cert: x509.Certificate, copy: Path) -> None:
    """The brought CA's file may be renewed (same subject and key: every certificate stays
    valid), never replaced by another CA: the daemons would stop trusting each other."""
    try:
        before = x509.load_pem_x509_certificate(copy.read_bytes())
    except ValueError:
        return  # a damaged copy: rewritten from the brought file
    if before.subject != cert.subject or before.public_key() != cert.public_key():
        raise StateError(
            copy,
            f"holds the CA this cluster was made with ({before.subject.rfc4514_string()}), "
            f"but spec.tls.ca now names another ({cert.subject.rfc4514_string()})",
            "point spec.tls.ca back at that CA's files; a cluster cannot change its CA",
        )


def _new_ca(cluster: str, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pgha {cluster} CA")])
    usage = key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def key_usage(
    digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _parse_ca(cert_pem: bytes, cert_path: Path, key_pem: bytes, key_path: Path) -> CaPair:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise StateError(cert_path, f"is not a PEM certificate ({exc})", _CA_FIX) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        why = "is encrypted" if isinstance(exc, TypeError) else f"is not a PEM key ({exc})"
        raise StateError(key_path, why, _CA_FIX) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise StateError(key_path, "holds a key of an unsupported type", "use an EC or RSA key")
    if cert.public_key() != key.public_key():
        raise StateError(key_path, f"is not the key of the CA in {cert_path}", _CA_FIX)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise StateError(cert_path, "is not a CA certificate (basicConstraints CA:FALSE)", _CA_FIX)
    return cert, key


_CA_FIX = "give the CA's certificate and its unencrypted private key, both PEM"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StateError(path, f"cannot be read ({exc.strerror})", f"check {what}") from None


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

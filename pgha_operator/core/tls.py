"""The cluster's certificates as render sees them, and when one must be (re)issued (pure).

Signing needs the clock and randomness, so the shell issues certificates into the state
dir (shell/state/pki.py) and hands the PEM text to `build_desired`: a re-render of the same
material gives the same files, and only a real renewal looks like a change.

Who holds what:
  CA                 the state dir only (key 0600); its certificate on every machine
  a machine's pair   serverAuth + clientAuth: PostgreSQL, Patroni's REST API and etcd
                     (peers and clients; etcd 3.4's /v3 gateway connects back to itself
                     with the server certificate)
  patroni-etcd       Patroni's client certificate for etcd, on every PostgreSQL node
  operator           the operator's client certificate for etcd, the state dir only
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# CloudNativePG's convention: 90-day certificates, renewed 7 days before they expire.
DEFAULT_VALIDITY_DAYS = 90
DEFAULT_RENEW_BEFORE_DAYS = 7
CA_VALIDITY_DAYS = 3650

PATRONI_ETCD_CLIENT = "patroni-etcd"
OPERATOR_CLIENT = "operator"


@dataclass(frozen=True)
class KeyPair:
    cert: str  # PEM
    key: str = field(repr=False)  # PEM, unencrypted


@dataclass(frozen=True)
class TlsMaterial:
    """Everything render places on the machines (the operator's own pair stays home)."""

    ca_cert: str
    servers: tuple[tuple[str, KeyPair], ...]  # (machine, pair), sorted by machine
    patroni_etcd: KeyPair

    def server(self, machine: str) -> KeyPair:
        for name, pair in self.servers:
            if name == machine:
                return pair
        raise KeyError(f"no certificate for machine {machine!r}")

    @classmethod
    def build(
        cls, ca_cert: str, servers: Mapping[str, KeyPair], patroni_etcd: KeyPair
    ) -> TlsMaterial:
        return cls(ca_cert, tuple(sorted(servers.items())), patroni_etcd)


@dataclass(frozen=True)
class CertInfo:
    """What the shell read from an issued certificate."""

    not_after: datetime  # timezone-aware UTC
    dns_names: frozenset[str]
    ip_addresses: frozenset[str]
    issuer_fingerprint: str  # sha256 of the CA certificate that signed it


@dataclass(frozen=True)
class CertWanted:
    """What a certificate must say."""

    dns_names: frozenset[str]
    ip_addresses: frozenset[str]
    ca_fingerprint: str


def reissue_reason(
    have: CertInfo | None, want: CertWanted, now: datetime, renew_before: timedelta
) -> str | None:
    """Why a certificate must be issued again; None when it is still good."""
    if have is None:
        return "missing"
    if have.issuer_fingerprint != want.ca_fingerprint:
        return "signed by another CA"
    if have.not_after - now <= renew_before:
        days = (have.not_after - now).total_seconds() / 86400
        return "expired" if days <= 0 else f"expires in {days:.1f} days"
    if not (want.dns_names <= have.dns_names and want.ip_addresses <= have.ip_addresses):
        return "names changed"
    return None


def days_left(not_after: datetime, now: datetime) -> float:
    return (not_after - now).total_seconds() / 86400


PLACEHOLDER_PEM = "generated-on-first-apply\n"
PLACEHOLDER_PAIR = KeyPair(PLACEHOLDER_PEM, PLACEHOLDER_PEM)


def placeholder_material(machines: tuple[str, ...]) -> TlsMaterial:
    """Shown instead of certificates where no state dir holds issued ones (render, plan)."""
    return TlsMaterial.build(
        PLACEHOLDER_PEM, {m: PLACEHOLDER_PAIR for m in machines}, PLACEHOLDER_PAIR
    )

"""Certificate renewal on a live cluster with a writer running through :5000.

The state dir's certificates are rewritten to end in two days (same keys, names and CA),
so the next `apply` finds them within renewBeforeDays: it issues new ones, writes them to
the machines, reloads Patroni (which reloads PostgreSQL and its REST API) and leaves etcd
running (it reads its pair on each TLS handshake). Then: every daemon that speaks TLS
serves the new certificate, no daemon was restarted, no acknowledged row was lost, and
the cluster is Converged with CertificatesValid.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.integration.cluster_helpers import (
    ClusterFiles,
    Writer,
    cli,
    dsn,
    postmaster_pid,
    running_cluster,
    service_pid,
    status,
    wait_for,
)

pytestmark = pytest.mark.integration

NET = "127.0.41"
BODY = """  etcd: {members: 3}
  postgres: {instances: 2}
  loadBalancer: {instances: 1}
"""
# (machine, port, how the handshake starts)
ENDPOINTS = [
    *((f"etcd{i}", 2379, "tls") for i in (1, 2, 3)),
    *((f"node{i}", 8008, "tls") for i in (1, 2)),
    *((f"node{i}", 5432, "postgres") for i in (1, 2)),
]
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


@dataclass
class Live(ClusterFiles):
    def apply(self) -> None:
        res = cli("apply", *self.args(), "--timeout", "240")
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"

    def address(self, machine: str) -> str:
        rows = status(self.manifest, self.state)["machines"]
        return next(m["address"] for m in rows if m["name"] == machine)

    def tls(self) -> Path:
        return self.state / "tls"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with running_cluster("renewal", f"{NET}.0/24", BODY, Live) as c:
        yield c


def served_serial(live: Live, address: str, port: int, start: str) -> int | None:
    """The serial of the certificate served on address:port, None when it speaks no TLS.
    The client presents the operator's certificate (etcd requires one)."""
    ctx = ssl.create_default_context(cafile=str(live.tls() / "ca.crt"))
    ctx.check_hostname = False  # the serial is what is checked here
    ctx.load_cert_chain(live.tls() / "operator.crt", live.tls() / "operator.key")
    with socket.create_connection((address, port), timeout=5) as raw:
        if start == "postgres":
            raw.sendall(SSL_REQUEST)
            if raw.recv(1) != b"S":
                return None
        try:
            with ctx.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
        except ssl.SSLError:
            return None
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def state_serial(live: Live, machine: str) -> int:
    path = live.tls() / "machines" / f"{machine}.crt"
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def make_due(live: Live, days: float = 2) -> None:
    """Rewrite every leaf in the state dir to end in `days` (same key, names and CA): due
    for renewal, still valid, so nothing but the operator's renewal changes."""
    ca_key = serialization.load_pem_private_key((live.tls() / "ca.key").read_bytes(), None)
    end = datetime.now(UTC) + timedelta(days=days)
    for path in [*live.tls().glob("machines/*.crt"), *live.tls().glob("*-*.crt")]:
        old = x509.load_pem_x509_certificate(path.read_bytes())
        builder = (
            x509.CertificateBuilder()
            .subject_name(old.subject)
            .issuer_name(old.issuer)
            .public_key(old.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(old.not_valid_before_utc)
            .not_valid_after(end)
        )
        for ext in old.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        path.write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]
        )


def pids(live: Live) -> dict[str, int | None]:
    found: dict[str, int | None] = {
        f"{m}/{s}": service_pid(live.state, m, s)
        for m, s in [
            ("etcd1", "etcd"),
            ("etcd2", "etcd"),
            ("etcd3", "etcd"),
            ("node1", "patroni"),
            ("node2", "patroni"),
        ]
    }
    found.update({f"{m}/postmaster": postmaster_pid(live.state, m) for m in ("node1", "node2")})
    return found


def test_renewal_is_served_without_a_restart_or_a_lost_row(live: Live) -> None:
    before = pids(live)
    assert all(before.values()), before
    tls_ports = [
        (m, port, start)
        for m, port, start in ENDPOINTS
        if served_serial(live, live.address(m), port, start) is not None
    ]
    with Writer(dsn(live.manifest, live.state)) as writer:
        make_due(live)
        live.apply()
        new = {m: state_serial(live, m) for m in ("etcd1", "etcd2", "etcd3", "node1", "node2")}
        for machine, port, start in tls_ports:
            address = live.address(machine)
            wait_for(
                f"{machine}:{port} to serve its renewed certificate",
                lambda a=address, p=port, s=start, m=machine: (
                    served_serial(live, a, p, s) == new[m]
                ),
                timeout=60,
            )
    assert writer.lost() == [], f"acknowledged rows lost: {writer.lost()[:20]}"
    assert pids(live) == before  # reloaded, never restarted
    for machine in new:  # the machines hold what the state dir issued
        placed = next(live.root.glob(f"state/machines/{machine}/etc/pgha/tls/*/server.crt"))
        assert x509.load_pem_x509_certificate(placed.read_bytes()).serial_number == new[machine]
    st = status(live.manifest, live.state)
    assert st["phase"] == "Converged", st["lastDecision"]
    assert 89 < st["certificates"]["daysLeft"] <= 90
    valid = next(c for c in st["conditions"] if c["type"] == "CertificatesValid")
    assert valid["status"] == "True"
    print(f"\nTLS endpoints checked: {tls_ports}; failed write attempts: {writer.failed}")

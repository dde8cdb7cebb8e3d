"""spec.patroni.source: debian — a local cluster run by Debian's own Patroni (3.0.2 on
Debian 12, /usr/bin/patroni) instead of our pinned venv: same operator code, real processes.

The tests share one cluster and run in file order.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pgha_operator.shell.state import pki
from tests.integration.cluster_helpers import (
    cli,
    dsn,
    kill_leftovers,
    make_state_root,
    query,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NETWORK = "127.0.27.0/24"  # node1-2 .11-.12, etcd1 .101, haproxy1 .201
NET = "127.0.27"
BODY = """  etcd: {members: 1}
  postgres: {instances: 2}
  patroni: {source: debian}
  loadBalancer: {instances: 1}
"""


@dataclass
class Live:
    manifest: Path
    state: Path

    def args(self) -> tuple[str, ...]:
        return ("-f", str(self.manifest), "--state-dir", str(self.state))

    def status(self) -> dict:
        return status(self.manifest, self.state)

    def members(self) -> dict[str, dict]:
        return {m["name"]: m for m in self.status()["postgres"]["members"]}

    def primary(self) -> str:
        return next(n for n, m in self.members().items() if m["role"] == "primary")


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    assert shutil.which("patroni", path="/usr/bin"), "make setup installs Debian's patroni"
    root = make_state_root()
    manifest = write_manifest(root, "debpatroni", NETWORK, BODY)
    c = Live(manifest, root / "state")
    try:
        res = cli("apply", *c.args(), "--timeout", "240")
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        assert "spec.patroni.source" in res.stderr  # the warning about the older Patroni
        yield c
    finally:
        cli("destroy", *c.args(), "--yes", timeout=180)
        kill_leftovers(c.state)
        shutil.rmtree(root, ignore_errors=True)


def versions(live: Live) -> dict[str, str]:
    ca = pki.client_files(live.state).ca  # the REST API speaks https only
    return {
        node: requests.get(f"https://{NET}.{ip}:8008/patroni", timeout=5, verify=ca).json()[
            "patroni"
        ]["version"]
        for node, ip in (("node1", 11), ("node2", 12))
    }


def member_state(live: Live, name: str) -> tuple[str, str]:
    m = live.members()[name]
    return m["role"], m["state"]


def test_debian_patroni_runs_the_cluster(live: Live) -> None:
    st = live.status()
    assert st["phase"] == "Converged", st
    # Debian's Patroni answers, not the pinned 4.1 of the venv.
    assert set(versions(live).values()) == {"3.0.2"}
    # 3.0.2 says "running" for a replica; the operator reads the primary's
    # pg_stat_replication and reports it streaming, as with Patroni 4.
    states = sorted((m["role"], m["state"]) for m in live.members().values())
    assert states == [("primary", "running"), ("replica", "streaming")]


def test_write_through_5000_read_through_5001(live: Live) -> None:
    query(dsn(live.manifest, live.state), "CREATE TABLE deb (id int primary key)")
    query(dsn(live.manifest, live.state), "INSERT INTO deb VALUES (7)")

    def on_replica() -> bool:
        rows = query(
            dsn(live.manifest, live.state, "replicas"), "SELECT pg_is_in_recovery(), id FROM deb"
        )
        return rows == [(True, 7)]

    wait_for("the row on the replica through :5001", on_replica, timeout=60)


def test_switchover_with_debian_patroni(live: Live) -> None:
    old = live.primary()
    res = cli("switchover", *live.args())
    assert res.returncode == 0, res.stderr
    new = live.primary()
    assert new != old
    wait_for(
        "the old primary streaming from the new one",
        lambda: member_state(live, old) == ("replica", "streaming"),
        timeout=90,
    )
    query(dsn(live.manifest, live.state), "INSERT INTO deb VALUES (8)")
    rows = query(dsn(live.manifest, live.state), "SELECT count(*) FROM deb")
    assert rows == [(2,)]


def test_changing_the_source_of_a_live_cluster_is_refused(live: Live) -> None:
    before = live.primary()
    text = live.manifest.read_text()
    live.manifest.write_text(text.replace("source: debian", "source: pypi"))
    try:
        res = cli("apply", *live.args(), "--timeout", "60")
        assert res.returncode == 2, res.stdout + res.stderr
        assert "manifest refused, nothing was changed" in res.stderr
        assert "spec.patroni.source" in res.stderr and "destroy" in res.stderr
        # status still shows the running cluster, and says why the edit is not applied.
        st = live.status()
        assert "spec.patroni.source" in str(st.get("manifestError")), st
        assert live.primary() == before
        assert set(versions(live).values()) == {"3.0.2"}
    finally:
        live.manifest.write_text(text)
    res = cli("apply", *live.args(), "--timeout", "60")
    assert res.returncode == 0, res.stderr

"""What the loop repairs and what it must leave alone, on a live cluster (issue 11).

- A dead etcd member that is not in the manifest is removed (it used to count itself as
  "a voter down" and block its own removal forever).
- A replica PostgreSQL cannot start for a configuration cause is NOT reinitialised (its
  data stays), and the status says Degraded with the log line that explains it.
- A replica whose timeline diverged from the primary's IS reinitialised, and the
  operator's count of attempts is forgotten once it streams again.

PGHA_CAPTURE=DIR copies each stuck replica's Patroni log tail there (fixtures of the parser).

The tests share one cluster and run in file order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    ClusterFiles,
    Operator,
    cli,
    etcdctl_tls,
    postmaster_pid,
    running_cluster,
    service_pid,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NET = "127.0.63"  # etcd1-3 .101-.103, node1-2 .11-.12, haproxy1 .201
FOREIGN_PEER = f"https://{NET}.250:2380"


def body(etcd: int = 3) -> str:
    return f"""  etcd: {{members: {etcd}}}
  postgres: {{instances: 2}}
  loadBalancer: {{instances: 1}}
"""


@dataclass
class Live(ClusterFiles):
    def apply(self, timeout: int = 120) -> None:
        res = cli("apply", *self.args(), "--timeout", str(timeout))
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        assert cli("plan", *self.args(), check=True).stdout.strip() == "no changes"

    def status(self) -> dict:
        return status(self.manifest, self.state)

    def condition(self, kind: str) -> dict:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)


def etcdctl(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        ["etcdctl", f"--endpoints=https://{NET}.101:2379", *etcdctl_tls(live.state), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert res.returncode == 0, f"etcdctl {args}: {res.stderr}"
    return res


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with running_cluster("repair", f"{NET}.0/24", body(), Live) as c:
        assert cli("plan", *c.args(), check=True).stdout.strip() == "no changes"
        yield c


def test_a_dead_foreign_etcd_member_is_removed(live: Live) -> None:
    # Added by hand and never started: a voter that will never be healthy.
    etcdctl(live, "member", "add", "foreign", f"--peer-urls={FOREIGN_PEER}")
    assert len(etcdctl(live, "member", "list").stdout.splitlines()) == 4
    assert "remove etcd member" in cli("plan", *live.args(), check=True).stdout
    live.apply()
    listed = etcdctl(live, "member", "list").stdout
    assert FOREIGN_PEER not in listed and len(listed.splitlines()) == 3


def test_a_leaving_etcd_member_whose_process_is_dead_is_removed(live: Live) -> None:
    pid = service_pid(live.state, "etcd3", "etcd")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    write_manifest(live.root, "repair", f"{NET}.0/24", body(etcd=1))
    live.apply(timeout=180)
    assert [m["name"] for m in live.status()["etcd"]["members"]] == ["etcd1"]
    assert {m["name"] for m in live.status()["machines"]} == {"etcd1", "node1", "node2", "haproxy1"}


def patroni_log(live: Live, replica: str) -> Path:
    return live.state / "machines" / replica / "var" / "log" / "pgha" / "patroni.log"


def capture(live: Live, replica: str, name: str, since: int) -> None:
    """What the replica's Patroni logged from `since` (a byte offset) on, when asked to."""
    target = os.environ.get("PGHA_CAPTURE")
    if target:
        with open(patroni_log(live, replica), "rb") as f:
            f.seek(since)
            Path(target, name).write_bytes(f.read())


def stuck_replica(live: Live, damage: Callable[[Path], None]) -> tuple[str, Path, int]:
    """Damage a replica's data dir, kill its postmaster: Patroni's restart fails. Returns
    the replica, a marker file in its data dir and the size of its log before."""
    members = {m["name"]: m for m in live.status()["postgres"]["members"]}
    replica = next(n for n, m in members.items() if m["role"] != "primary")
    log_size = patroni_log(live, replica).stat().st_size
    data = live.state / "machines" / replica / "pg" / "data"
    # A reinit clones the primary into an empty data directory: this file would go.
    marker = data / "pgha-test-marker"
    marker.write_text("left alone\n")
    damage(data)
    pid = postmaster_pid(live.state, replica)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return replica, marker, log_size


def test_a_replica_with_a_config_error_is_not_reinitialised(live: Live) -> None:
    original: dict[str, str] = {}

    def bad_setting(data: Path) -> None:
        auto_conf = data / "postgresql.auto.conf"
        original["text"] = auto_conf.read_text()
        auto_conf.write_text(original["text"] + "shared_buffers = 'lots'\n")

    operator = Operator(live.manifest, live.state)
    try:
        replica, marker, log_size = stuck_replica(live, bad_setting)
        auto_conf = marker.parent / "postgresql.auto.conf"

        def degraded_with_reason() -> str | bool:
            s = live.status()
            reason = next(c for c in s["conditions"] if c["type"] == "PatroniConverged")["reason"]
            return s["phase"] == "Degraded" and "config error" in reason and reason

        reason = wait_for("Degraded with the config error", degraded_with_reason, timeout=120)
        assert 'invalid value for parameter "shared_buffers"' in reason or (
            "contains errors" in reason
        ), reason
        time.sleep(10)  # several cycles of a running operator: still nothing wiped
        capture(live, replica, "start_failed_patroni_config_error.log", log_size)
        assert marker.exists(), f"{replica} was reinitialised:\n{operator.output()}"
        assert "reinitialize" not in operator.output()
        # The cause removed, Patroni starts it by itself; the operator sees it converge.
        auto_conf.write_text(original["text"])
        wait_for(
            f"{replica} streaming again",
            lambda: live.status()["phase"] == "Converged",
            timeout=120,
        )
        assert marker.exists()
    finally:
        operator.stop()
    marker.unlink()


def test_a_diverged_replica_is_reinitialised(live: Live) -> None:
    def diverge(data: Path) -> None:
        # A timeline 2 that forked off timeline 1 before this replica's last checkpoint, as
        # a primary promoted elsewhere would have written it: at its next start PostgreSQL
        # follows the newest timeline (recovery_target_timeline 'latest') and refuses.
        history = data / "pg_wal" / "00000002.history"
        history.write_text("1\t0/1000000\tno recovery target specified\n")
        shutil.chown(history, "postgres", "postgres")

    operator = Operator(live.manifest, live.state)
    try:
        replica, marker, log_size = stuck_replica(live, diverge)
        wait_for(f"{replica} reinitialised", lambda: not marker.exists(), timeout=120)
        wait_for("converged again", lambda: live.status()["phase"] == "Converged", timeout=180)
        assert f"reinitialize {replica} from the primary (diverged timeline" in operator.output()
        capture(live, replica, "start_failed_patroni_diverged.log", log_size)
        # Streaming again: the attempt no longer counts against the cap.
        wait_for("history forgotten", lambda: not (live.state / "reinit.json").exists())
    finally:
        operator.stop()

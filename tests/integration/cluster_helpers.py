"""Helpers for integration tests that run whole clusters through the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg

CLI = [sys.executable, "-m", "pgha_operator.cli"]


def make_state_root() -> Path:
    # Not pytest's tmp_path: /tmp/pytest-of-root is mode 700 and postgres cannot reach it.
    root = Path(tempfile.mkdtemp(prefix="pgha-test-", dir="/tmp"))
    root.chmod(0o755)
    return root


def write_manifest(root: Path, name: str, network: str, body: str = "") -> Path:
    manifest = root / "manifests" / f"{name}.yaml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        f"""apiVersion: pgha/v1
kind: Cluster
metadata:
  name: {name}
spec:
  provider: {{type: local, network: {network}}}
  profile: fast
{body}"""
    )
    return manifest


def cli(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[2],
    )
    if check and res.returncode != 0:
        raise AssertionError(f"{args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def status(manifest: Path, state: Path) -> dict[str, Any]:
    res = cli("status", "-f", str(manifest), "--state-dir", str(state), "--json", timeout=60)
    return json.loads(res.stdout)


def dsn(manifest: Path, state: Path, role: str = "primary") -> str:
    res = cli("dsn", "-f", str(manifest), "--state-dir", str(state), "--role", role, check=True)
    return res.stdout.strip() + " connect_timeout=2"


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float = 90, step: float = 0.5
) -> Any:
    """Poll until predicate() is truthy; generous timeouts, never a speed assertion."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - components restart under us
            last_exc = exc
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def service_pid(state: Path, machine: str, service: str) -> int | None:
    path = state / "machines" / machine / "run" / "pgha" / f"{service}.pid"
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def postmaster_pid(state: Path, machine: str) -> int | None:
    path = state / "machines" / machine / "pg" / "data" / "postmaster.pid"
    try:
        return int(path.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def kill_leftovers(state: Path) -> None:
    """Safety net: SIGKILL every process tagged with a machine of this state dir."""
    prefix = f"PGHA_MACHINE={state}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(prefix) for item in env.split(b"\0")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
    for pm in state.glob("machines/*/pg/data/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pm.read_text().splitlines()[0]), signal.SIGKILL)


@dataclass
class ClusterFiles:
    """A test cluster's files: its temporary root, its manifest and its state dir."""

    root: Path
    manifest: Path
    state: Path

    def args(self) -> list[str]:
        return ["-f", str(self.manifest), "--state-dir", str(self.state)]


Files = TypeVar("Files", bound=ClusterFiles)


def destroy_cluster(manifest: Path, state: Path) -> None:
    """`destroy`, then the safety net for whatever it left running."""
    cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes", timeout=180)
    kill_leftovers(state)


@contextlib.contextmanager
def running_cluster(
    name: str,
    network: str,
    body: str,
    files: type[Files],
    apply_timeout: int = 240,
) -> Iterator[Files]:
    """A cluster applied from a fresh root, yielded as `files` (the test's own subclass of
    ClusterFiles, or ClusterFiles) once converged; destroyed and its root removed
    afterwards, whatever happened."""
    root = make_state_root()
    cluster = files(root, write_manifest(root, name, network, body), root / "state")
    try:
        res = cli(
            "apply", *cluster.args(), "--timeout", str(apply_timeout), timeout=apply_timeout + 120
        )
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        yield cluster
    finally:
        destroy_cluster(cluster.manifest, cluster.state)
        shutil.rmtree(root, ignore_errors=True)


def query(conninfo: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


class Operator:
    """`pgha-operator run` in the background, stopped with SIGTERM like a user's Ctrl-C."""

    def __init__(self, manifest: Path, state: Path, *extra: str) -> None:
        self.log = open(state.parent / f"operator-{time.time_ns()}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            # console: the tests read its lines; a later --log-format in `extra` wins
            [
                *CLI,
                "run",
                "-f",
                str(manifest),
                "--state-dir",
                str(state),
                "--log-format",
                "console",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[2],
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()


class Writer:
    """Inserts (seq) through :5000 in a thread, reconnecting on errors; counts what failed."""

    def __init__(self, conninfo: str, table: str = "writes") -> None:
        self.conninfo = conninfo
        self.table = table
        self.acked: list[int] = []
        self.ack_times: list[float] = []  # time.monotonic() of each acknowledged insert
        self.failed = 0
        self._stop = threading.Event()
        query(conninfo, f"CREATE TABLE IF NOT EXISTS {table} (seq int primary key)")
        # Continue after an earlier writer's rows on the same table.
        self._start = query(conninfo, f"SELECT coalesce(max(seq), 0) FROM {table}")[0][0]
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_for("first acknowledged writes", lambda: len(self.acked) > 5, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        seq = self._start
        while not self._stop.is_set():
            seq += 1
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"INSERT INTO {self.table} VALUES (%s)", (seq,))
                self.acked.append(seq)
                self.ack_times.append(time.monotonic())
            except psycopg.Error:
                self.failed += 1
                self._after_failure()
                time.sleep(0.05)

    def _after_failure(self) -> None:
        """A subclass's hook: what a client does after a refused write (nothing here)."""

    def longest_gap(self, since: float) -> float:
        """Longest time without an acknowledged write after `since` (write unavailability)."""
        times = [since, *(t for t in self.ack_times if t >= since)]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def lost(self) -> list[int]:
        rows = {r[0] for r in query(self.conninfo, f"SELECT seq FROM {self.table}")}
        return [s for s in self.acked if s not in rows]


def etcdctl_tls(state: Path) -> list[str]:
    """etcdctl's flags for the operator's certificate: etcd refuses clients without one."""
    tls = state / "tls"
    return [
        f"--cacert={tls / 'ca.crt'}",
        f"--cert={tls / 'operator.crt'}",
        f"--key={tls / 'operator.key'}",
    ]


def process_uid(pid: int) -> int:
    """The real uid of a running process (/proc/<pid>/status `Uid:` line)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")

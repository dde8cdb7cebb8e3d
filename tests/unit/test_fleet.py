"""run -f DIR: the start/stop rules (pure), loop health, and the fleet driving fake
controllers (no processes): one cluster's hung or failing loop never holds up another's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.fleet import FileScan, fleet_changes, loop_health
from pgha_operator.shell.fleet import Fleet
from pgha_operator.shell.status_http import Snapshot

# --- the pure rules ---------------------------------------------------------------------------


def test_new_files_start_their_clusters_and_running_ones_are_left_alone() -> None:
    files = {"d/a.yaml": FileScan(("a",)), "d/b.yaml": FileScan(("b", "c"))}
    changes = fleet_changes(files, running={"a": "d/a.yaml"})
    assert dict(changes.start) == {"b": "d/b.yaml", "c": "d/b.yaml"}
    assert changes.stop == frozenset()


def test_a_removed_file_or_a_name_no_longer_in_its_file_stops_the_loop() -> None:
    files = {"d/b.yaml": FileScan(("b",))}
    changes = fleet_changes(files, running={"a": "d/a.yaml", "c": "d/b.yaml", "b": "d/b.yaml"})
    assert changes.stop == {"a", "c"}
    assert not changes.start


def test_a_refused_file_changes_nothing() -> None:
    files = {"d/a.yaml": FileScan(None, "bad yaml"), "d/new.yaml": FileScan(None, "bad")}
    changes = fleet_changes(files, running={"a": "d/a.yaml"})
    assert changes.stop == frozenset() and not changes.start


def test_a_name_in_two_files_starts_nowhere_but_a_running_one_keeps_running() -> None:
    files = {"d/a.yaml": FileScan(("a", "x")), "d/b.yaml": FileScan(("x", "a"))}
    changes = fleet_changes(files, running={"a": "d/a.yaml"})
    assert not changes.start and not changes.stop
    assert dict(changes.conflicts) == {"x": ("d/a.yaml", "d/b.yaml")}


def test_a_cluster_moved_to_another_file_starts_only_once_its_old_loop_ended() -> None:
    files = {"d/new.yaml": FileScan(("a",))}
    first = fleet_changes(files, running={"a": "d/old.yaml"})
    assert first.stop == {"a"} and not first.start
    assert not fleet_changes(files, running={}, stopping={"a"}).start
    assert dict(fleet_changes(files, running={}).start) == {"a": "d/new.yaml"}


def test_one_hung_loop_is_reported_even_when_the_others_are_fine() -> None:
    loops = {"a": (0.0, 99.0), "b": (0.0, 10.0), "c": (95.0, None)}
    health = loop_health(loops, now=100.0, hung_after=30.0)
    assert health.hung == (("b", 90.0),) and not health.alive
    assert not health.ready  # c has not completed its first cycle
    assert loop_health({"a": (0.0, 99.0)}, 100.0, 30.0).ready
    # A first cycle that never ends is a hang too.
    assert loop_health({"c": (0.0, None)}, 100.0, 30.0).hung == (("c", 100.0),)
    assert loop_health({}, 100.0, 30.0).ready  # nothing to wait for


# --- the fleet with fake controllers -----------------------------------------------------------


def manifest(name: str, third: int) -> str:
    return f"""apiVersion: pgha/v1
kind: Cluster
metadata: {{name: {name}}}
spec:
  provider: {{type: local, network: 127.0.{third}.0/24}}
"""


class FakeController:
    """Cycles every few ms; `hang` blocks its cycles, `refuse` fails prepare()."""

    def __init__(self, world: World, source: str, name: str, state_dir: Path | None) -> None:
        self.world, self.name, self.source = world, name, source
        self.state_dir = state_dir or Path("/nonexistent")
        self.last_cycle: Snapshot | None = None
        self.cycles = 0
        self.unlocked = False

    def prepare(self, standby: bool = False) -> None:
        assert standby  # run -f DIR stands by while another operator leads a cluster
        if self.name in self.world.refuse:
            raise PermanentError(f"preflight of cluster {self.name}: etcd not found")

    def cycle(self, act: bool = True) -> None:
        if self.name in self.world.hang:
            self.world.release.wait()
        self.cycles += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.cycle()
            phase = self.world.phases.get(self.name, "Converged")
            self.last_cycle = Snapshot({"phase": phase}, time.monotonic())
            stop.wait(0.005)

    def unlock(self) -> None:
        self.unlocked = True


class World:
    def __init__(self) -> None:
        self.made: list[FakeController] = []
        self.hang: set[str] = set()
        self.refuse: set[str] = set()
        self.phases: dict[str, str] = {}
        self.logs: list[dict[str, object]] = []
        self.release = threading.Event()

    def factory(self, source: str, name: str, state_dir: Path | None) -> FakeController:
        ctl = FakeController(self, source, name, state_dir)
        self.made.append(ctl)
        return ctl

    def latest(self, name: str) -> FakeController:
        return [c for c in self.made if c.name == name][-1]


def wait_until(what: str, predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Fleet, World, Path]:
    world = World()
    fleet = Fleet(tmp_path, world.factory, tmp_path / "state", retry_seconds=0.05)
    # The loops log from their threads; structlog may still hold an earlier test's stderr.
    with capture_logs() as logs:
        world.logs = logs
        yield fleet, world, tmp_path
        world.release.set()
        fleet.stop_all(timeout=5)


def test_files_start_and_stop_loops_and_a_removed_file_destroys_nothing(fleet) -> None:
    fleet, world, d = fleet
    (d / "a.yaml").write_text(manifest("a", 71))
    (d / "b.yaml").write_text(manifest("b", 72))
    fleet.step()
    assert set(fleet.members) == {"a", "b"}
    wait_until("both cycling", lambda: all(c.cycles > 2 for c in world.made))
    assert world.latest("a").state_dir == d / "state" / "a"
    (d / "b.yaml").unlink()
    fleet.step()
    assert set(fleet.members) == {"a"}
    b = world.latest("b")
    wait_until("b's loop ended", lambda: b.unlocked)
    fleet.step()
    assert not fleet.stopping
    (d / "c.yaml").write_text(manifest("c", 73))
    fleet.step()
    assert set(fleet.members) == {"a", "c"}


def test_a_broken_file_keeps_its_cluster_running_and_starts_nothing(fleet) -> None:
    fleet, world, d = fleet
    (d / "a.yaml").write_text(manifest("a", 71))
    fleet.step()
    (d / "a.yaml").write_text("spec: [unclosed\n")
    (d / "z.yaml").write_text(manifest("z", 72).replace("local", "nosuchprovider"))
    fleet.step()
    assert set(fleet.members) == {"a"}
    assert set(fleet.file_problems) == {str(d / "a.yaml"), str(d / "z.yaml")}
    a = world.latest("a")
    before = a.cycles
    wait_until("a still cycling", lambda: a.cycles > before + 2)


def test_a_hung_loop_never_delays_another_and_stops_the_watchdog(fleet) -> None:
    fleet, world, d = fleet
    (d / "a.yaml").write_text(manifest("a", 71))
    (d / "b.yaml").write_text(manifest("b", 72))
    world.hang.add("b")
    fleet.step()
    a = world.latest("a")
    wait_until("a cycling while b hangs", lambda: a.cycles > 20)
    assert world.latest("b").cycles == 0
    notifier = RecordingNotifier()
    time.sleep(0.2)
    health = fleet.notify(notifier, hung_after=0.1)
    assert [name for name, _ in health.hung] == ["b"]
    assert "WATCHDOG" not in notifier.sent[-1] and "READY" not in notifier.sent[-1]
    assert "b hung" in notifier.sent[-1]["STATUS"]
    world.release.set()
    world.hang.clear()
    wait_until("b cycles", lambda: world.latest("b").cycles > 0)
    health = fleet.notify(notifier, hung_after=5)
    assert health.alive and notifier.sent[-1]["READY"] == 1 and notifier.sent[-1]["WATCHDOG"] == 1


def test_before_every_first_cycle_the_start_timeout_is_extended_not_readied(fleet) -> None:
    fleet, world, d = fleet
    (d / "a.yaml").write_text(manifest("a", 71))
    world.hang.add("a")
    fleet.step()
    notifier = RecordingNotifier()
    fleet.notify(notifier, hung_after=60)
    assert "READY" not in notifier.sent[-1]
    assert notifier.sent[-1]["EXTEND_TIMEOUT_USEC"] > 0
    assert notifier.sent[-1]["WATCHDOG"] == 1
    fleet.notify(notifier, hung_after=60)
    assert notifier.sent[-1] == {
        "EXTEND_TIMEOUT_USEC": notifier.sent[-1]["EXTEND_TIMEOUT_USEC"],
        "WATCHDOG": 1,
    }


def test_a_cluster_that_cannot_start_is_retried_and_counts_as_started(fleet) -> None:
    fleet, world, d = fleet
    (d / "a.yaml").write_text(manifest("a", 71))
    world.refuse.add("a")
    fleet.step()
    wait_until("retried", lambda: len(world.made) >= 3)
    assert "etcd not found" in (fleet.members["a"].error or "")
    said = [e for e in world.logs if e["event"] == "cluster not started; retrying"]
    assert len(said) == 1  # said once, not at every retry
    assert fleet.health(60).ready  # READY does not wait for a cluster that cannot start
    assert fleet.snapshot() is None  # no cluster has a status yet
    world.refuse.clear()
    wait_until("running", lambda: world.latest("a").cycles > 0)
    wait_until("error cleared", lambda: fleet.members["a"].error is None)


def test_snapshot_is_converged_only_when_every_cluster_is(fleet) -> None:
    fleet, world, d = fleet
    (d / "a.yaml").write_text(manifest("a", 71))
    (d / "b.yaml").write_text(manifest("b", 72))
    fleet.step()
    wait_until("both have a status", lambda: all(c.last_cycle for c in world.made))
    snap = fleet.snapshot()
    assert snap is not None and snap.status["phase"] == "Converged"
    assert set(snap.status["clusters"]) == {"a", "b"}
    world.phases["b"] = "Degraded"
    wait_until("b degraded", lambda: world.latest("b").last_cycle.status["phase"] == "Degraded")
    snap = fleet.snapshot()
    assert snap is not None and snap.status["phase"] == "Progressing"
    assert snap.status["clusters"]["a"]["phase"] == "Converged"


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send(self, **fields: object) -> bool:
        self.sent.append(fields)
        return True


def test_every_cluster_of_a_directory_records_into_one_registry(tmp_path: Path) -> None:
    from pgha_operator.cli.fleet import controller_maker
    from pgha_operator.shell.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    make = controller_maker(metrics)
    repo = Path(__file__).resolve().parents[2]
    ctl = make(str(repo / "manifests/demo.yaml"), "demo", tmp_path / "demo")
    assert ctl.metrics.families is metrics  # type: ignore[attr-defined]
    assert 'cluster="demo"' in metrics.exposition().decode()

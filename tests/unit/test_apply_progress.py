"""`apply`'s progress: one line rewritten in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pgha_operator.cli.progress import CLEAR_LINE, ApplyProgress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Step:
    describe: str


@dataclass
class Report:
    decision: str
    phase: str = "Progressing"
    converged: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drive(progress: ApplyProgress, clock: Clock) -> None:
    progress.action(Step("start etcd on etcd1"))  # type: ignore[arg-type]
    clock.now += 3
    progress.cycle(Report("waiting: EtcdHealthy 1/3 healthy"))  # type: ignore[arg-type]
    clock.now += 1
    progress.cycle(Report("waiting: EtcdHealthy 1/3 healthy"))  # type: ignore[arg-type]
    clock.now += 70
    progress.action(Step("start patroni on node1"))  # type: ignore[arg-type]
    clock.now += 5
    progress.cycle(Report("converged", "Converged", converged=True))  # type: ignore[arg-type]
    progress.close()


def test_on_a_terminal_one_line_is_rewritten_and_actions_stay_above_it() -> None:
    out, clock = FakeTty(), Clock()
    progress = ApplyProgress(out, clock=clock, width=lambda: 200)
    assert progress.tty
    drive(progress, clock)
    text = out.getvalue()
    # What the terminal keeps: each action on its own line, then the last status line.
    screen = [chunk.rsplit(CLEAR_LINE, 1)[-1] for chunk in text.split("\n")]
    assert screen == [
        "-> start etcd on etcd1",
        "-> start patroni on node1",
        "[1:19] converged; checking it still holds after one Patroni loop",
        "",
    ]
    # Every redraw starts at the line's start: the step, the wait and the time were shown.
    draws = [d for d in text.replace("\n", CLEAR_LINE).split(CLEAR_LINE) if d.startswith("[")]
    assert "[0:00] step 1: start etcd on etcd1" in draws
    assert "[0:03] waiting: EtcdHealthy 1/3 healthy (Progressing)" in draws
    assert "[0:04] waiting: EtcdHealthy 1/3 healthy (Progressing)" in draws
    assert "[1:14] step 2: start patroni on node1" in draws


def test_elsewhere_plain_lines_only_when_something_changes() -> None:
    out, clock = io.StringIO(), Clock()
    progress = ApplyProgress(out, clock=clock).start()  # no ticker without a terminal
    assert not progress.tty and progress._ticker is None
    drive(progress, clock)
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "[0:00] -> start etcd on etcd1",
        "[0:03] waiting: EtcdHealthy 1/3 healthy (Progressing)",
        "[1:14] -> start patroni on node1",
        "[1:19] converged; checking it still holds after one Patroni loop",
    ]


def test_a_long_line_is_cut_to_the_terminal_width() -> None:
    out = FakeTty()
    progress = ApplyProgress(out, clock=Clock(), width=lambda: 40)
    progress.cycle(Report("waiting: " + "x" * 200))  # type: ignore[arg-type]
    assert out.getvalue() == CLEAR_LINE + ("[0:00] waiting: " + "x" * 200)[:39]


def test_on_a_terminal_the_elapsed_time_moves_while_apply_waits() -> None:
    out = FakeTty()
    progress = ApplyProgress(out, width=lambda: 200).start()
    deadline = time.monotonic() + 10
    while out.getvalue().count(CLEAR_LINE) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the ticker redraws about once a second with nothing else happening
    progress.close()
    assert out.getvalue().count("[0:0") >= 3  # two ticks (at least) and the final line
    assert out.getvalue().endswith("\n")


def test_apply_reports_every_cycle_to_the_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real apply loop against the fake world: actions and cycles reach the progress."""
    from pgha_operator.shell import loops
    from tests.fakeworld.drift import manifest
    from tests.fakeworld.world import FakeWorld
    from tests.unit.test_controller_fakeworld import controller_for

    world = FakeWorld.for_cluster(manifest())
    ctl = controller_for(world, tmp_path, monkeypatch)
    out = io.StringIO()
    progress = ApplyProgress(out)
    ctl.progress = progress.action
    monkeypatch.setattr(loops.time, "sleep", lambda s: world.tick())  # time passes in the world
    seen: list[Any] = []

    def on_cycle(report: Any) -> None:
        seen.append(report)
        progress.cycle(report)

    report = ctl.apply(600, on_cycle=on_cycle)
    assert report.converged and seen[-1] is report and progress.steps > 0
    lines = out.getvalue().splitlines()
    assert any(" -> " in line for line in lines)
    assert lines[-1].endswith("converged; checking it still holds after one Patroni loop")


@pytest.mark.parametrize("tty", [True, False])
def test_a_decision_on_many_lines_stays_one_line(tty: bool) -> None:
    out = FakeTty() if tty else io.StringIO()
    progress = ApplyProgress(out, clock=Clock(), width=lambda: 200)
    progress.cycle(Report("waiting: GET /config failed: HTTP 502 <!DOCTYPE HTML>\r\n<html>\n"))  # type: ignore[arg-type]
    shown = out.getvalue().replace(CLEAR_LINE, "")
    assert shown.rstrip("\n") == (
        "[0:00] waiting: GET /config failed: HTTP 502 <!DOCTYPE HTML> <html> (Progressing)"
    )

"""--log-format (cli/logs.py) and the loop's one decision line per cycle (shell/loops.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from pgha_operator.cli import build_parser
from pgha_operator.cli.logs import configure
from pgha_operator.shell.loops import DecisionLog, timed_cycle
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.world import FakeWorld
from tests.unit.test_controller_fakeworld import controller_for


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_the_default_is_console_on_a_terminal_and_json_otherwise() -> None:
    assert configure(None, Tty()) == "console"
    assert configure(None, io.StringIO()) == "json"
    assert configure("console", io.StringIO()) == "console"


def test_run_and_apply_take_log_format() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--log-format", "json"]).log_format == "json"
    assert parser.parse_args(["apply"]).log_format is None
    with pytest.raises(SystemExit):
        parser.parse_args(["apply", "--log-format", "xml"])


def decision_lines(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], int]:
    """Bring the fake world to converged, then one more idle cycle and one repair."""
    out = io.StringIO()
    configure(fmt, out)
    world = FakeWorld.for_cluster(manifest())
    ctl = controller_for(world, tmp_path, monkeypatch)
    decisions = DecisionLog(ctl)
    for _ in range(30):
        report = timed_cycle(ctl)
        decisions(report)
        world.tick()
        if report.converged:
            break
    before = len(out.getvalue().splitlines())
    decisions(timed_cycle(ctl))  # converged again: no line
    idle = len(out.getvalue().splitlines()) - before
    Drift("kill", "haproxy", "haproxy").apply(world)
    decisions(timed_cycle(ctl))
    return out.getvalue().splitlines(), idle


def test_json_decision_lines_name_cluster_cycle_actions_and_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, idle = decision_lines("json", tmp_path, monkeypatch)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert idle == 0
    assert all(r["event"] == "decision" and r["cluster"] == "demo" for r in records)
    cycles = [r["cycle"] for r in records]
    assert cycles == sorted(cycles) and cycles[0] == 1
    repair = records[-1]
    assert repair["outcome"] == "acted" and repair["actions"] == ["start haproxy on haproxy"]
    assert any(r["phase"] == "Converged" and r["outcome"] == "no action" for r in records)
    assert {"timestamp", "level"} <= repair.keys()


def test_console_decision_lines_are_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, _ = decision_lines("console", tmp_path, monkeypatch)
    assert all(" decision " in line and "cluster=demo" in line for line in lines)
    assert "actions=['start haproxy on haproxy']" in lines[-1]

"""The fencer's probes start every interval, however long each one takes (shell/loops.fence_loop)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pgha_operator.shell import loops


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class StopAt:
    """A stop event that is set once the clock reaches `at`."""

    def __init__(self, clock: Clock, at: float) -> None:
        self.clock, self.at = clock, at

    def is_set(self) -> bool:
        return self.clock.now >= self.at - 1e-9


class SlowProbes:
    def __init__(self, clock: Clock, interval: float, takes: float) -> None:
        self.clock, self.interval, self.takes = clock, interval, takes
        self.starts: list[float] = []

    def probe(self) -> Any:
        self.starts.append(self.clock.now)
        self.clock.now += self.takes  # a TLS handshake and an HTTP round trip
        return None

    def wait(self, timeout: float, stop: StopAt) -> Any:
        self.clock.now += timeout  # no death reported meanwhile
        return None


def test_a_slow_probe_does_not_stretch_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(loops.time, "monotonic", clock.monotonic)
    fencer = SlowProbes(clock, interval=0.2, takes=0.05)
    ctl = SimpleNamespace(event=lambda reason: None)
    loops.fence_loop(ctl, fencer, threading.Event(), StopAt(clock, 2.0))  # type: ignore[arg-type]
    gaps = [b - a for a, b in zip(fencer.starts, fencer.starts[1:], strict=False)]
    assert len(fencer.starts) >= 10  # (the 11th may start at 1.999...: float steps)
    assert all(gap == pytest.approx(0.2) for gap in gaps)
    assert clock.now == pytest.approx(2.0, abs=0.06)


def test_a_fence_wakes_the_loop_and_a_failing_step_does_not_end_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(loops.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(loops.time, "sleep", lambda s: None)
    events: list[str] = []

    class Flaky(SlowProbes):
        def probe(self) -> Any:
            super().probe()
            if len(self.starts) == 1:
                raise RuntimeError("one step fails")
            if len(self.starts) == 2:
                return SimpleNamespace(fence=True, reason="fenced node1")
            return None

    fencer = Flaky(clock, interval=0.2, takes=0.01)
    wake = threading.Event()
    ctl = SimpleNamespace(event=events.append)
    loops.fence_loop(ctl, fencer, wake, StopAt(clock, 1.0))  # type: ignore[arg-type]
    assert len(fencer.starts) >= 4 and events == ["fenced node1"] and wake.is_set()

"""The fencer's probes start every interval, however long each one takes (shell/loops.pause)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pgha_operator.shell import loops


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class ClockEvent:
    """An Event that is never set: waiting moves the clock on."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0.0
        return False


class SlowProbes:
    def __init__(self, clock: Clock, interval: float, takes: float) -> None:
        self.clock, self.interval, self.takes = clock, interval, takes
        self.starts: list[float] = []

    def probe(self) -> Any:
        self.starts.append(self.clock.now)
        self.clock.now += self.takes  # a TLS handshake and an HTTP round trip
        return None

    def wait(self, timeout: float, wake: ClockEvent) -> Any:
        wake.wait(timeout)  # no death reported meanwhile
        return None


def test_a_slow_probe_does_not_stretch_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(loops.time, "monotonic", clock.monotonic)
    fencer = SlowProbes(clock, interval=0.2, takes=0.05)
    ctl = SimpleNamespace(fencer=fencer, event=lambda reason: None)
    loops.pause(ctl, 2.0, ClockEvent(clock), ClockEvent(clock))  # type: ignore[arg-type]
    gaps = [b - a for a, b in zip(fencer.starts, fencer.starts[1:], strict=False)]
    assert len(fencer.starts) >= 10  # (the 11th may start at 1.999...: float steps)
    assert all(gap == pytest.approx(0.2) for gap in gaps)
    assert clock.now == pytest.approx(2.0, abs=0.06)

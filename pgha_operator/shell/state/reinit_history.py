"""The operator's memory of its reinitialisations: `<state dir>/reinit.json`.

Read every cycle (read-only commands too: reading writes nothing), written only by a cycle
that acts, after executing: attempts of the Reinitialize actions just done are counted,
members seen healthy again are forgotten (core/facts/reinit.py holds the rules).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import structlog

from pgha_operator.core.actions import Action, Reinitialize
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.reinit import (
    ReinitRecord,
    dump_reinit_history,
    next_reinit_history,
    parse_reinit_history,
)
from pgha_operator.shell.state.atomic import write_atomic

log = structlog.get_logger("pgha-operator")

FILE = "reinit.json"


def load(state_dir: Path) -> dict[str, ReinitRecord]:
    """An absent file is an empty history. A corrupt one is named in the log and read as
    empty: the next write replaces it, and the cap still bounds the attempts from there."""
    path = state_dir / FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        return parse_reinit_history(text)
    except ValueError as exc:
        log.warning("ignoring the reinitialisation history", file=str(path), error=str(exc))
        return {}


def update(state_dir: Path, observed: Observed, done: Iterable[Action], now: float) -> None:
    reinitialized = [a.machine for a in done if isinstance(a, Reinitialize)]
    history = next_reinit_history(observed.reinits, observed.patroni, reinitialized, now)
    if history == dict(observed.reinits):
        return
    path = state_dir / FILE
    if not history:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, dump_reinit_history(history).encode())

"""The operator's memory of its own reinitialisations (pure: parse, dump, next state).

Reinitialising a replica wipes its data, so the plan backs off between attempts and gives
up after a few (core/plan/reinit.py). The history survives restarts of the operator in the
state dir (`reinit.json`, read and written by shell/state/reinit_history.py) and reaches the plan
as part of the observation, like any other fact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pgha_operator.core.facts.types import PatroniFacts, PatroniMember


@dataclass(frozen=True)
class ReinitRecord:
    attempts: int  # reinitialisations since the member was last seen healthy
    last: float  # wall-clock seconds (Unix time) of the latest one


ReinitHistory = Mapping[str, ReinitRecord]


def parse_reinit_history(text: str) -> dict[str, ReinitRecord]:
    """`{"node3": {"attempts": 2, "last": 1764300000.0}}`; ValueError names what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object of member -> {attempts, last}")
    out: dict[str, ReinitRecord] = {}
    for member, entry in data.items():
        try:
            out[member] = ReinitRecord(int(entry["attempts"]), float(entry["last"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"member {member!r}: needs numbers attempts and last") from exc
    return out


def dump_reinit_history(history: ReinitHistory) -> str:
    data = {m: {"attempts": r.attempts, "last": r.last} for m, r in sorted(history.items())}
    return json.dumps(data, indent=2) + "\n"


def next_reinit_history(
    history: ReinitHistory, patroni: PatroniFacts, reinitialized: Iterable[str], now: float
) -> dict[str, ReinitRecord]:
    """Count the reinitialisations just executed; forget members seen healthy again (the
    cap counts attempts in a row, not over the cluster's life)."""
    out = {name: record for name, record in history.items() if not _recovered(patroni.member(name))}
    for name in reinitialized:
        before = out.get(name)
        out[name] = ReinitRecord((before.attempts if before else 0) + 1, now)
    return out


def _recovered(member: PatroniMember | None) -> bool:
    if member is None:
        return False
    return member.state == "running" if member.is_leader else member.state == "streaming"

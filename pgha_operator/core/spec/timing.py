"""Patroni's and HAProxy's timing: the two named profiles and the values a manifest resolves
to once its unset fields are taken from its profile."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgha_operator.core.spec.patterns import DURATION_PATTERN

if TYPE_CHECKING:
    from pgha_operator.core.spec.models import ClusterSpec

# Two named timing profiles. `seed` is the original lab's; `fast` is the lowest
# Patroni accepts (ttl floor 20) with the loop/retry LAB-NOTES measured as stable.
PROFILES: dict[str, dict[str, Any]] = {
    "seed": {
        "ttl": 30,
        "loop_wait": 10,
        "retry_timeout": 10,
        "check": {"inter": "3s", "fastinter": "3s", "downinter": "3s", "rise": 2, "fall": 3},
    },
    "fast": {
        "ttl": 20,
        "loop_wait": 1,
        "retry_timeout": 4,
        "check": {
            "inter": "500ms",
            "fastinter": "100ms",
            "downinter": "100ms",
            "rise": 1,
            "fall": 2,
        },
    },
}


@dataclass(frozen=True)
class Timing:
    ttl: int
    loop_wait: int
    retry_timeout: int
    inter: str
    fastinter: str
    downinter: str
    rise: int
    fall: int


def resolve_timing(spec: ClusterSpec) -> Timing:
    profile = PROFILES[spec.profile]
    check = spec.load_balancer.health_check
    pat = spec.patroni

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return Timing(
        ttl=pick(pat.ttl, profile["ttl"]),
        loop_wait=pick(pat.loop_wait, profile["loop_wait"]),
        retry_timeout=pick(pat.retry_timeout, profile["retry_timeout"]),
        inter=pick(check.inter, profile["check"]["inter"]),
        fastinter=pick(check.fastinter, profile["check"]["fastinter"]),
        downinter=pick(check.downinter, profile["check"]["downinter"]),
        rise=pick(check.rise, profile["check"]["rise"]),
        fall=pick(check.fall, profile["check"]["fall"]),
    )


def duration_ms(text: str) -> int:
    match = re.fullmatch(DURATION_PATTERN, text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    number = int(text[: -len(match.group(1))])
    return number if match.group(1) == "ms" else number * 1000

"""What a long-lived daemon is: a pure value rendered per machine, run by a Host's
service manager (the local supervisor reads it as JSON; systemd gets a unit file)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ServiceState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    argv: tuple[str, ...]
    user: str | None = None  # None = the operator's own user
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    reload_signal: str | None = "HUP"  # None: the service cannot reload, restart it
    stop_timeout: float = 60.0


def definition_to_json(d: ServiceDefinition) -> str:
    data = {
        "name": d.name,
        "argv": list(d.argv),
        "user": d.user,
        "env": dict(d.env),
        "cwd": d.cwd,
        "reload_signal": d.reload_signal,
        "stop_timeout": d.stop_timeout,
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def definition_from_json(text: str) -> ServiceDefinition:
    data = json.loads(text)
    return ServiceDefinition(
        name=data["name"],
        argv=tuple(data["argv"]),
        user=data.get("user"),
        env=dict(data.get("env") or {}),
        cwd=data.get("cwd"),
        reload_signal=data.get("reload_signal"),
        stop_timeout=float(data.get("stop_timeout", 60.0)),
    )

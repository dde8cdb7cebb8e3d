"""`spec.failover.fenceAgent`: a ClusterLabs fence agent (fence_ipmilan, fence_redfish,
fence_virsh, fence_aws, ...) that powers machines off where the provider cannot (`ssh`
hosts). The agent gets its options on stdin, one `name=value` a line, `action=` last (the
fence-agents API); `{machine}` and `{address}` in a value become the machine's name and
address; `machines` adds or overrides options per machine (each server's BMC address)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from pgha_operator.core.spec.backup import Model

OPTION_NAME = r"^[a-z][a-z0-9_-]*$"
ACTIONS_SET_BY_THE_OPERATOR = ("action", "option")  # "option" is the agents' old name for it


class FenceAgentSpec(Model):
    command: Annotated[str, Field(min_length=1)]  # a path, or a name on the operator's PATH
    args: tuple[str, ...] = ()  # flags before stdin's options (most agents need none)
    options: dict[Annotated[str, Field(pattern=OPTION_NAME)], str] = {}
    machines: dict[str, dict[Annotated[str, Field(pattern=OPTION_NAME)], str]] = {}
    # Seconds one call of the agent may take (a BMC answers in a few seconds)
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 20

    @field_validator("options", "machines")
    @classmethod
    def _no_action(cls, value: dict) -> dict:
        found = [k for k in _option_names(value) if k in ACTIONS_SET_BY_THE_OPERATOR]
        if found:
            raise ValueError(
                f"{found[0]!r} is set by the operator (off, on, status), not in the manifest"
            )
        return value

    def stdin(self, machine: str, address: str, action: str) -> str:
        """The agent's stdin for `action` on `machine` (pure)."""
        merged = {**self.options, **self.machines.get(machine, {})}
        lines = [
            f"{k}={v.replace('{machine}', machine).replace('{address}', address)}"
            for k, v in merged.items()
        ]
        return "\n".join([*lines, f"action={action}"]) + "\n"


def _option_names(value: dict) -> list[str]:
    names = []
    for k, v in value.items():
        names.extend(v.keys() if isinstance(v, dict) else [k])
    return names


def agent_status(returncode: int) -> str | None:
    """`status`'s exit code (fence-agents API): 0 on, 2 off, anything else unknown."""
    return {0: "on", 2: "off"}.get(returncode)

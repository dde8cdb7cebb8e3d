"""Power through a ClusterLabs fence agent (`spec.failover.fenceAgent`), for hosts whose
power the operator does not own (`ssh`): fence_ipmilan, fence_redfish, fence_virsh,
fence_aws... or any program that speaks their protocol: options on stdin, `action=off`,
`on` or `status`; exit 0 for success, and for `status` 0 = on, 2 = off.

`FencedSshProvider` is the ssh provider with the capabilities the agent gives it:
`Fencing` (off, then `status` until it says off: a fence is confirmed before any key is
released), `MachineStates` (off is `dead`; on is `running`: a BMC cannot tell a hung
machine from a live one) and `PeerReach` (the peer probe run on the replica over SSH), so
the fencer's guards, the cut-off path included, hold as on nspawn.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.spec.fence_agent import FenceAgentSpec, agent_status
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.providers import reach
from pgha_operator.shell.providers.base import Fencing, MachineStates, PeerReach
from pgha_operator.shell.providers.ssh import SshProvider

CONFIRM_POLL = 0.2  # seconds between two `status` calls after `off`
REMOTE_PYTHON = "python3"  # on every PostgreSQL host (Patroni needs it)


class FenceAgent:
    def __init__(self, spec: FenceAgentSpec, address: Callable[[str], str]) -> None:
        self.spec = spec
        self.address = address

    def run(self, machine: str, action: str) -> subprocess.CompletedProcess[str]:
        """One call of the agent; HostError when it cannot be run or overruns its time."""
        argv = [self.spec.command, *self.spec.args]
        stdin = self.spec.stdin(machine, self.address(machine), action)
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=self.spec.timeout_seconds
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"fence agent {self.spec.command} {action} {machine}: {exc}") from exc

    def status(self, machine: str) -> str | None:
        """ "on", "off", or None when the agent cannot tell."""
        try:
            return agent_status(self.run(machine, "status").returncode)
        except HostError:
            return None

    def off(self, machine: str) -> None:
        """`off`, then `status` until it says off (within the agent's timeout): confirmed."""
        res = self.run(machine, "off")
        if res.returncode != 0:
            raise HostError(
                f"fence agent {self.spec.command} off {machine} exited {res.returncode}: "
                f"{(res.stderr or res.stdout).strip()[-300:]}"
            )
        deadline = time.monotonic() + self.spec.timeout_seconds
        while (state := self.status(machine)) != "off":
            if time.monotonic() > deadline:
                raise HostError(
                    f"fence agent {self.spec.command}: {machine} not confirmed off "
                    f"(status {state or 'unknown'})"
                )
            time.sleep(CONFIRM_POLL)


class FencedSshProvider(SshProvider, Fencing, MachineStates, PeerReach):
    """The ssh provider with a fence agent (make_provider picks it when one is set)."""

    def agent(self) -> FenceAgent:
        spec = self.cluster.spec.failover.fence_agent
        assert spec is not None  # make_provider picks this class only with one
        return FenceAgent(spec, self.topology.address)

    def power_off(self, name: str) -> None:
        self.agent().off(name)

    def machine_state(self, name: str) -> MachineState:
        state = self.agent().status(name)
        if state == "off":
            return MachineState.DEAD
        return MachineState.RUNNING if state == "on" else MachineState.UNKNOWN

    def reaches(self, source: str, address: str, port: int, timeout: float) -> bool | None:
        """The peer probe run on `source` itself, over SSH."""
        try:
            res = self.host(source).run(
                reach.argv(REMOTE_PYTHON, address, port, timeout),
                check=False,
                timeout=timeout + reach.SLACK,
            )
        except HostError:
            return None
        return reach.result(res.returncode)

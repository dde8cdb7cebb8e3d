"""spec.failover.fenceAgent and the ssh provider's fencing through it, against a fake agent
that speaks the ClusterLabs protocol (tests/fixtures/fence_agent_fake.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.spec import load
from pgha_operator.core.spec.fence_agent import FenceAgentSpec, agent_status
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.providers import make_provider
from pgha_operator.shell.providers.base import Fencing, MachineStates, PeerReach, capabilities
from pgha_operator.shell.providers.fence_agent import FenceAgent, FencedSshProvider

AGENT = Path(__file__).parents[1] / "fixtures" / "fence_agent_fake.py"
REPO = Path(__file__).parents[2]


def spec(tmp_path: Path, **options: str) -> FenceAgentSpec:
    return FenceAgentSpec.model_validate(
        {
            "command": sys.executable,
            "args": [str(AGENT)],
            "options": {"plug": "{machine}", "statefile": str(tmp_path / "power.json"), **options},
            "timeoutSeconds": 1,
        }
    )


def power(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "power.json").read_text())


def test_stdin_has_the_options_the_machines_own_and_the_action_last() -> None:
    s = FenceAgentSpec.model_validate(
        {
            "command": "fence_ipmilan",
            "options": {"username": "admin", "ip": "{address}", "lanplus": "1"},
            "machines": {"pg1": {"ip": "10.0.9.1"}},
        }
    )
    assert s.stdin("pg1", "10.0.0.11", "off") == (
        "username=admin\nip=10.0.9.1\nlanplus=1\naction=off\n"
    )
    assert s.stdin("pg2", "10.0.0.12", "status").splitlines()[1] == "ip=10.0.0.12"


@pytest.mark.parametrize("where", ["options", "machines"])
def test_the_action_is_the_operators(where: str) -> None:
    value = {"action": "on"} if where == "options" else {"pg1": {"option": "on"}}
    with pytest.raises(ValidationError, match="set by the operator"):
        FenceAgentSpec.model_validate({"command": "fence_virsh", where: value})


def test_status_exit_codes() -> None:
    assert (agent_status(0), agent_status(2), agent_status(1)) == ("on", "off", None)


def test_off_is_confirmed_by_status(tmp_path: Path) -> None:
    agent = FenceAgent(spec(tmp_path), lambda m: "10.0.0.11")
    assert agent.status("pg1") == "on"
    agent.off("pg1")
    assert agent.status("pg1") == "off"
    assert power(tmp_path)["_calls"][:3] == ["status pg1", "off pg1", "status pg1"]


def test_an_off_the_agent_cannot_confirm_fails(tmp_path: Path) -> None:
    agent = FenceAgent(spec(tmp_path, stuck="1"), lambda m: "10.0.0.11")
    with pytest.raises(HostError, match="pg1 not confirmed off \\(status on\\)"):
        agent.off("pg1")


def test_an_agent_that_cannot_run_is_no_status(tmp_path: Path) -> None:
    broken = FenceAgentSpec.model_validate({"command": str(tmp_path / "no-such-agent")})
    agent = FenceAgent(broken, lambda m: "10.0.0.11")
    assert agent.status("pg1") is None
    with pytest.raises(HostError, match="no-such-agent off pg1"):
        agent.off("pg1")


def test_an_ssh_cluster_with_an_agent_can_fence(tmp_path: Path) -> None:
    text = (REPO / "manifests" / "ssh.example.yaml").read_text()
    agent = {
        "command": sys.executable,
        "args": [str(AGENT)],
        "options": {"plug": "{machine}", "statefile": str(tmp_path / "power.json")},
    }
    text = text.replace(
        "  profile: fast\n", f"  profile: fast\n  failover: {{fenceAgent: {json.dumps(agent)}}}\n"
    )
    manifest = tmp_path / "prod.yaml"
    manifest.write_text(text)
    cluster = load([str(manifest)])[0].cluster
    provider = make_provider(cluster, tmp_path / "state")
    assert isinstance(provider, FencedSshProvider) and provider.can_fence
    assert {"Fencing", "MachineStates", "PeerReach"} <= set(capabilities(provider))
    assert isinstance(provider, Fencing | MachineStates | PeerReach)
    assert provider.machine_state("pg1") == MachineState.RUNNING
    provider.power_off("pg1")
    assert provider.machine_state("pg1") == MachineState.DEAD
    assert provider.machine_state("pg2") == MachineState.RUNNING

"""The ssh provider meets a host another operator's cluster (another identity) owns: it
refuses it in create, machines and destroy, and changes nothing on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pgha_operator.core.spec import load
from pgha_operator.shell.hosts.base import CommandResult
from pgha_operator.shell.providers.host_owner import HostRefused, Owner
from pgha_operator.shell.providers.ssh import SshProvider
from pgha_operator.shell.state.identity import ensure_cluster_id

REPO = Path(__file__).parents[2]
THEIRS = "f" * 32


class OwnedHost:
    """A host whose /etc/pgha/prod/owner.json names another identity; records every call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []
        self.owner = Owner("prod", THEIRS).to_json()

    def read(self, path: str) -> bytes | None:
        return self.owner if path == "/etc/pgha/prod/owner.json" else None

    def run(self, argv: Sequence[str], **_: object) -> CommandResult:
        self.calls.append(" ".join(argv))
        return CommandResult(tuple(argv), 0, "", "")

    def write(self, path: str, data: bytes, **_: object) -> bool:
        self.calls.append(f"write {path}")
        return True

    def remove(self, path: str) -> None:
        self.calls.append(f"remove {path}")


@pytest.fixture
def provider(tmp_path: Path) -> SshProvider:
    cluster = load(REPO / "manifests/ssh.example.yaml")[0].cluster
    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("")
    spec = cluster.spec.provider.model_copy(
        update={"key_file": str(key), "known_hosts": str(known)}
    )
    cluster = cluster.model_copy(
        update={"spec": cluster.spec.model_copy(update={"provider": spec})}
    )
    p = SshProvider(cluster, tmp_path / "state")
    p._hosts["pg1"] = OwnedHost("pg1")  # type: ignore[assignment]
    return p


def test_create_refuses_a_host_of_another_identity_and_changes_nothing(
    provider: SshProvider,
) -> None:
    ours = ensure_cluster_id(provider.state_dir)
    with pytest.raises(HostRefused) as refused:
        provider.create(provider.topology.machine("pg1"))
    assert f"belongs to cluster prod of identity {THEIRS}" in str(refused.value)
    assert ours in str(refused.value)
    assert provider._hosts["pg1"].calls == []  # type: ignore[attr-defined]
    assert not (provider.state_dir / "hosts" / "pg1").exists()


def test_machines_and_destroy_refuse_it_too(provider: SshProvider) -> None:
    ensure_cluster_id(provider.state_dir)
    (provider.state_dir / "hosts").mkdir(parents=True)
    (provider.state_dir / "hosts" / "pg1").write_text("10.0.0.11\n")
    (fact,) = provider.machines()
    assert fact.name == "pg1" and not fact.exists
    assert fact.error is not None and "identity" in fact.error
    with pytest.raises(HostRefused):
        provider.destroy("pg1")
    assert provider._hosts["pg1"].calls == []  # type: ignore[attr-defined]

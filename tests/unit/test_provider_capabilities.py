"""Providers declare their optional capabilities as Protocols (shell/providers/base.py);
callers ask with isinstance, and `can_fence` follows from Fencing."""

from __future__ import annotations

from pgha_operator.shell.providers.base import (
    Fencing,
    Freezing,
    Isolation,
    MachineStates,
    ProviderBase,
    capabilities,
    capability,
)
from pgha_operator.shell.providers.local import LocalProvider
from pgha_operator.shell.providers.nspawn import NspawnProvider
from pgha_operator.shell.providers.ssh import SshProvider
from pgha_operator.shell.providers.vagrant import VagrantProvider

ALL = (Fencing, MachineStates, Freezing, Isolation)


def declared(cls: type) -> set[type]:
    return {c for c in ALL if issubclass(cls, c)}


def test_each_provider_declares_what_it_can_do() -> None:
    assert declared(LocalProvider) == {Fencing, MachineStates, Freezing}
    assert declared(NspawnProvider) == {Fencing, MachineStates, Freezing, Isolation}
    assert declared(VagrantProvider) == {Fencing, MachineStates}
    assert declared(SshProvider) == set()


def test_the_declaration_is_explicit_not_a_method_probe() -> None:
    # A capability is a base class of the provider, not a method that happens to exist.
    for cls in (LocalProvider, NspawnProvider, VagrantProvider):
        assert Fencing in cls.__mro__ and MachineStates in cls.__mro__
    assert not hasattr(SshProvider, "power_off")  # no method that only raises


class _Fenced(ProviderBase, Fencing):
    def power_off(self, name: str) -> None:
        self.off = name


class _Plain(ProviderBase):
    pass


def test_can_fence_follows_the_fencing_capability() -> None:
    assert _Fenced().can_fence is True
    assert _Plain().can_fence is False
    fenced = capability(_Fenced(), Fencing)
    assert fenced is not None
    fenced.power_off("node1")
    assert capability(_Plain(), Fencing) is None
    assert capabilities(_Fenced()) == ["Fencing"] and capabilities(_Plain()) == []

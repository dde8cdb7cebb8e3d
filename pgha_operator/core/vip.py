"""spec.loadBalancer.vip: where it may live and which interface carries it (pure).

A virtual IP is moved between the load balancers by keepalived (VRRP version 3, unicast
peers). keepalived refuses a loopback interface, so the `local` provider, whose machines
are loopback addresses of one host, cannot carry one. On the other providers the VIP is
an address of the provider's network that no machine (and not the nspawn operator's own
link) uses.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from pgha_operator.core.spec import ClusterSpec, VipSpec

if TYPE_CHECKING:  # topology imports this module (its rules)
    from pgha_operator.core.topology import Topology

# The interface carrying each machine's own address, per provider, when vip.interface is
# unset: nspawn wires eth0 to its bridge (shell/providers/nspawn_net.py); a Vagrant box's
# private network is its second NIC (eth1: the first is VirtualBox's NAT). An ssh host's
# interfaces are the user's to name.
DEFAULT_INTERFACE: dict[str, str] = {"nspawn": "eth0", "vagrant": "eth1"}

VIP_FIELD = "spec.loadBalancer.vip"


def vip_interface(spec: ClusterSpec) -> str:
    """The interface keepalived puts the VIP on (the rules below made sure there is one)."""
    vip = _vip(spec)
    chosen = vip.interface or DEFAULT_INTERFACE.get(spec.provider.type)
    if chosen is None:
        raise ValueError(f"{VIP_FIELD}.interface is unset on provider {spec.provider.type!r}")
    return chosen


def client_address(spec: ClusterSpec, topo: Topology) -> str:
    """Where clients connect: the VIP when the load balancers have one, else the first."""
    vip = spec.load_balancer.vip
    return str(vip.address) if vip else topo.address(topo.loadbalancers[0])


def _vip(spec: ClusterSpec) -> VipSpec:
    vip = spec.load_balancer.vip
    if vip is None:
        raise ValueError(f"{VIP_FIELD} is not set")
    return vip


def vip_problems(spec: ClusterSpec, machine_addresses: dict[str, str]) -> list[tuple[str, str]]:
    """(field path, reason) for a VIP the cluster cannot have. `machine_addresses`: the
    address -> where it is used (every machine of the topology)."""
    vip = spec.load_balancer.vip
    if vip is None:
        return []
    provider = spec.provider.type
    if provider == "local":
        return [
            (
                VIP_FIELD,
                "the local provider cannot carry a virtual IP: its machines are loopback "
                "addresses of this host, and keepalived refuses a loopback interface for "
                "VRRP. Remove spec.loadBalancer.vip, or use the nspawn, vagrant or ssh "
                "provider, whose load balancers have a network interface of their own",
            )
        ]
    problems = _address_problems(spec, vip.address, machine_addresses)
    if vip.interface is None and provider not in DEFAULT_INTERFACE:
        problems.append(
            (
                f"{VIP_FIELD}.interface",
                f"the {provider} provider has no default interface: name the one that "
                "carries the load balancers' own addresses (e.g. eth0)",
            )
        )
    return problems


def _address_problems(
    spec: ClusterSpec, address: IPv4Address, machine_addresses: dict[str, str]
) -> list[tuple[str, str]]:
    where = f"{VIP_FIELD}.address"
    network = spec.provider.network
    if address.is_loopback:
        return [(where, f"{address} is a loopback address; keepalived refuses loopback")]
    if str(address) in machine_addresses:
        return [(where, f"{address} is already used by {machine_addresses[str(address)]}")]
    if network is None:
        return []
    if address not in network:
        return [(where, f"{address} is outside spec.provider.network ({network})")]
    if address in (network.network_address, network.broadcast_address):
        return [(where, f"{address} is the network or broadcast address of {network}")]
    return []

"""keepalived on a load balancer machine (spec.loadBalancer.vip): keepalived.conf, the
script it runs to track HAProxy, and its service definition.

One VRRP instance per cluster, version 3 (sub-second advertisements), unicast to the other
load balancers (no multicast needed on the network). Priorities follow the order of
spec.loadBalancer's machines, the first highest; with `nopreempt` that order only decides
who takes the VIP first. The tracked script connects to HAProxy's statistics port: it is
answered by HAProxy itself, so the check neither opens a PostgreSQL connection nor fails
when the database fails over. docs/connections.md has the measurements behind the numbers.
"""

from __future__ import annotations

from pgha_operator.core.render.context import DesiredFile, RenderContext, render_template
from pgha_operator.core.services import ServiceDefinition
from pgha_operator.core.spec import VipSpec, duration_ms
from pgha_operator.core.vip import vip_interface

TEMPLATE = "keepalived.conf.j2"
CHECK_NAME = "pgha_haproxy"
INSTANCE = "pgha"
# vrrp_script timing in whole seconds (keepalived's unit): down after 2 failed checks,
# back after 2 good ones, so one slow check does not move the VIP.
CHECK_INTERVAL_S = 1
CHECK_TIMEOUT_S = 1
CHECK_FALL = 2
CHECK_RISE = 2
# 255 is the address owner's in VRRP; the first load balancer gets TOP_PRIORITY.
TOP_PRIORITY = 200
CONFIG_MODE = 0o644
CHECK_MODE = 0o755  # root's; enable_script_security refuses a script others can write
STOP_TIMEOUT = 10.0


def vip_spec(ctx: RenderContext) -> VipSpec:
    vip = ctx.cluster.spec.load_balancer.vip
    if vip is None:
        raise ValueError(f"cluster {ctx.topology.cluster!r} has no spec.loadBalancer.vip")
    return vip


def has_vip(ctx: RenderContext, machine: str) -> bool:
    """keepalived runs on `machine`: a load balancer of a cluster that declares a VIP."""
    return ctx.cluster.spec.load_balancer.vip is not None and machine in ctx.topology.loadbalancers


def advert_int(vip: VipSpec) -> str:
    """keepalived's advert_int: seconds with up to two decimals ('0.2', '1')."""
    return f"{duration_ms(vip.advert_interval) / 1000:g}"


def priority(ctx: RenderContext, machine: str) -> int:
    return TOP_PRIORITY - ctx.topology.loadbalancers.index(machine)


def keepalived_conf(ctx: RenderContext, machine: str) -> str:
    topo = ctx.topology
    if machine not in topo.loadbalancers:
        raise ValueError(f"{machine!r} is not a load balancer of cluster {topo.cluster!r}")
    vip = vip_spec(ctx)
    return render_template(
        TEMPLATE,
        cluster=topo.cluster,
        machine=machine,
        address=topo.address(machine),
        peers=[topo.address(n) for n in topo.loadbalancers if n != machine],
        vip=str(vip.address),
        prefix=vip.prefix,
        interface=vip_interface(ctx.cluster.spec),
        virtual_router_id=vip.virtual_router_id,
        priority=priority(ctx, machine),
        advert_int=advert_int(vip),
        instance=INSTANCE,
        check_name=CHECK_NAME,
        check_script=ctx.layout(machine).keepalived_check,
        check_interval=CHECK_INTERVAL_S,
        check_timeout=CHECK_TIMEOUT_S,
        check_fall=CHECK_FALL,
        check_rise=CHECK_RISE,
    )


def check_script(ctx: RenderContext, machine: str) -> str:
    """The tracked health check: HAProxy's statistics port on this machine accepts a TCP
    connection (bash's /dev/tcp: nothing to install; keepalived's timeout bounds it)."""
    address = ctx.topology.address(machine)
    port = ctx.cluster.spec.load_balancer.ports.stats
    return (
        "#!/bin/bash\n"
        "# Written by pgha-operator: keepalived's tracked HAProxy check (exit 0 = healthy).\n"
        f"exec 3<>/dev/tcp/{address}/{port}\n"
    )


def keepalived_files(ctx: RenderContext, machine: str) -> list[DesiredFile]:
    """The check script first: `keepalived -t` refuses a config whose script is missing."""
    layout = ctx.layout(machine)
    return [
        DesiredFile(
            machine, layout.keepalived_check, check_script(ctx, machine), CHECK_MODE, None,
            "keepalived",
        ),
        DesiredFile(
            machine, layout.keepalived_config, keepalived_conf(ctx, machine), CONFIG_MODE, None,
            "keepalived",
        ),
    ]  # fmt: skip


def keepalived_definition(ctx: RenderContext, machine: str) -> ServiceDefinition:
    layout = ctx.layout(machine)
    run = layout.keepalived_run
    return ServiceDefinition(
        name="keepalived",
        # VRRP only, in the foreground, logging to stderr (journald / the supervisor's log);
        # pid files of its own, so two clusters (or the host's keepalived) never collide.
        argv=(
            ctx.binaries.keepalived,
            "--vrrp",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--use-file",
            layout.keepalived_config,
            "--pid",
            f"{run}/keepalived.pid",
            "--vrrp_pid",
            f"{run}/vrrp.pid",
        ),  # fmt: skip
        user=None,  # root: it adds and removes the VIP and sends VRRP (raw sockets)
        env={},
        reload_signal="HUP",  # re-reads keepalived.conf, keeps the VIP where it is
        stop_timeout=STOP_TIMEOUT,
    )

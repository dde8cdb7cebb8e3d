"""spec.loadBalancer.vip rendered (pure): keepalived.conf per load balancer (VRRPv3, unicast
to the other load balancers, the tracked HAProxy check) and the check script."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pydantic
import pytest

from pgha_operator.core.render import RenderContext
from pgha_operator.core.render.keepalived import check_script, keepalived_conf
from pgha_operator.core.spec import VipSpec
from tests.unit.test_render import REPO, make_ctx, variant

NSPAWN = REPO / "manifests" / "nspawn.yaml"
VIP = {"address": "10.231.0.50", "interface": "host0", "advertInterval": "200ms"}


def vip_ctx(instances: int = 3, **vip: object) -> RenderContext:
    return make_ctx(variant(NSPAWN, loadBalancer={"instances": instances, "vip": {**VIP, **vip}}))


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def block(text: str, opener: str) -> list[str]:
    """The lines inside `opener { ... }` (one level)."""
    body = lines(text)
    start = body.index(f"{opener} {{") + 1
    return body[start : body.index("}", start)]


def test_each_load_balancer_speaks_vrrp3_unicast_to_the_others_only() -> None:
    ctx = vip_ctx()
    addresses = {n: ctx.topology.address(n) for n in ctx.topology.loadbalancers}
    assert len(addresses) == 3
    for name, address in addresses.items():
        conf = keepalived_conf(ctx, name)
        assert "vrrp_version 3" in lines(conf)
        assert f"unicast_src_ip {address}" in lines(conf)
        assert sorted(block(conf, "unicast_peer")) == sorted(
            a for n, a in addresses.items() if n != name
        )
        assert block(conf, "virtual_ipaddress") == ["10.231.0.50/24 dev host0"]


def test_priorities_are_distinct_and_follow_the_machine_order() -> None:
    ctx = vip_ctx()
    prios = [
        int(next(x for x in lines(keepalived_conf(ctx, n)) if x.startswith("priority ")).split()[1])
        for n in ctx.topology.loadbalancers
    ]
    assert prios == sorted(prios, reverse=True) and len(set(prios)) == 3
    assert all(1 <= p <= 254 for p in prios)  # 255 belongs to an address owner


@pytest.mark.parametrize(
    ("interval", "expected"), [("1s", "1"), ("200ms", "0.2"), ("50ms", "0.05")]
)
def test_the_advert_interval_is_written_in_seconds(interval: str, expected: str) -> None:
    conf = keepalived_conf(vip_ctx(advertInterval=interval), "haproxy1")
    assert f"advert_int {expected}" in lines(conf)


@pytest.mark.parametrize("interval", ["5ms", "105ms", "41s", "0s"])
def test_intervals_vrrp3_cannot_carry_are_refused(interval: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="VRRP version 3|zero|10ms"):
        VipSpec.model_validate({"address": "10.231.0.50", "advertInterval": interval})


def test_the_track_script_is_tracked_and_checks_haproxys_own_stats_port() -> None:
    ctx = vip_ctx()
    conf = keepalived_conf(ctx, "haproxy1")
    assert f'script "{ctx.layout("haproxy1").keepalived_check}"' in lines(conf)
    assert block(conf, "track_script") == ["pgha_haproxy"]
    assert "enable_script_security" in lines(conf)
    script = check_script(ctx, "haproxy1")
    port = ctx.cluster.spec.load_balancer.ports.stats
    assert script.startswith("#!/bin/bash\n")
    assert f"/dev/tcp/{ctx.topology.address('haproxy1')}/{port}" in script


def test_the_providers_interface_is_used_when_the_spec_names_none() -> None:
    ctx = vip_ctx(interface=None)
    assert "interface eth0" in lines(keepalived_conf(ctx, "haproxy1"))  # nspawn's link


def test_refused_without_a_vip_or_on_a_machine_that_is_no_load_balancer() -> None:
    ctx = vip_ctx()
    with pytest.raises(ValueError, match="not a load balancer"):
        keepalived_conf(ctx, ctx.topology.postgres[0])
    plain = make_ctx(variant(NSPAWN, loadBalancer={"instances": 2}))
    with pytest.raises(ValueError, match="no spec.loadBalancer.vip"):
        keepalived_conf(plain, "haproxy1")


def network_interface() -> str | None:
    """An interface keepalived accepts on this host (not loopback), if any."""
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
    return names[0] if names else None


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
def test_keepalived_itself_accepts_the_rendered_config(tmp_path: Path) -> None:
    # `keepalived -t` (2.2.7, Debian 12) exits non-zero on any warning, a tracked script it
    # cannot find and an interface that does not exist: render with a real one, place the script.
    interface = network_interface()
    if interface is None:
        pytest.skip("no non-loopback interface")
    ctx = vip_ctx(interface=interface)
    script = tmp_path / "check.sh"
    script.write_text(check_script(ctx, "haproxy1"))
    script.chmod(0o755)
    conf = tmp_path / "keepalived.conf"
    rendered = keepalived_conf(ctx, "haproxy1")
    conf.write_text(rendered.replace(ctx.layout("haproxy1").keepalived_check, str(script)))
    done = subprocess.run(["keepalived", "-t", "-f", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = conf.read_text().replace("virtual_router_id 51", "virtual_router_id 300")
    conf.write_text(broken)
    assert subprocess.run(["keepalived", "-t", "-f", str(conf)], capture_output=True).returncode


def test_the_default_interval_is_the_measured_choice() -> None:
    # docs/connections.md: 100ms (crash takeover <= 0.36 s; survives a 260 ms stall).
    ctx = make_ctx(
        variant(NSPAWN, loadBalancer={"instances": 2, "vip": {"address": "10.231.0.50"}})
    )
    assert "advert_int 0.1" in lines(keepalived_conf(ctx, "haproxy1"))

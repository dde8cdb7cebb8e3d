"""Drift: what people and accidents do to a running cluster behind the operator's back, and
manifest variants (scaled up or down, a changed parameter)."""

from __future__ import annotations

from dataclasses import dataclass

from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import Cluster, parse_text
from tests.fakeworld.etcd import Member
from tests.fakeworld.world import FakeWorld

FOREIGN_PEER = "https://127.0.10.250:2380"  # an etcd member no manifest names


@dataclass(frozen=True)
class Drift:
    kind: str
    machine: str = ""
    detail: str = ""  # a service or a path

    def apply(self, world: FakeWorld) -> None:
        m = world.machines.get(self.machine)
        if self.kind == "extra_etcd_member":
            world.etcd.members.append(Member(world.etcd._new_id(), FOREIGN_PEER))
            return
        if m is None or not m.powered:
            return
        proc = m.procs.get(self.detail)
        if self.kind == "kill" and proc is not None and proc.state == ServiceState.RUNNING:
            proc.state = ServiceState.FAILED
            world.on_stop(m.name, proc, graceful=False)
        elif self.kind == "stop" and proc is not None:
            world.provider.host(m.name).service(self.detail).stop()
        elif self.kind == "edit" and self.detail in m.files:
            m.files[self.detail] += b"# edited by hand\n"
        elif self.kind == "delete":
            m.files.pop(self.detail, None)
        elif self.kind == "remove_etcd_member":
            etcd = m.proc("etcd")
            member = world.etcd.member(etcd.extra.get("member")) if etcd else None
            if member is not None and len(world.etcd.voters()) > 1:
                world.etcd.members.remove(member)
        elif self.kind == "wipe_etcd_data":
            etcd = m.procs.pop("etcd", None)
            if etcd is not None and etcd.state == ServiceState.RUNNING:
                world.on_stop(m.name, etcd, graceful=True)
            world.provider.host(m.name).remove(world.layout.etcd_data)
        elif self.kind == "stale_primary":
            patroni = m.proc("patroni")
            node = patroni.extra.get("node") if patroni else None
            if node is not None:
                node.stale_primary = 2
        elif self.kind == "power_off":
            world.provider.power_off(m.name)

    def __str__(self) -> str:
        return f"{self.kind}({self.machine}{', ' + self.detail if self.detail else ''})"


def manifest(
    *,
    etcd: int = 3,
    postgres: int = 3,
    max_connections: int = 200,
    name: str = "demo",
    fencing: str = "auto",
) -> Cluster:
    """The demo manifest with its counts and one restart-only parameter varied."""
    text = f"""
apiVersion: pgha/v1
kind: Cluster
metadata:
  name: {name}
spec:
  provider:
    type: local
    network: 127.0.10.0/24
  profile: fast
  failover:
    fencing: "{fencing}"
  etcd:
    members: {etcd}
  postgres:
    version: 15
    instances: {postgres}
    parameters:
      max_connections: {max_connections}
    synchronous: "off"
  loadBalancer:
    instances: 1
    machines:
      - {{name: haproxy, address: 127.0.10.201}}
    ports: {{primary: 5000, replicas: 5001, stats: 7000}}
"""
    loaded, problems = parse_text(text, "fakeworld manifest")
    assert not problems, problems
    return loaded[0].cluster

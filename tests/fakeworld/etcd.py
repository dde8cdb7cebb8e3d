"""A fake etcd cluster: membership, quorum, learners, and a key-value store for Patroni.

What it keeps from the real one (LAB-NOTES, shell/clients/etcd.py):
- a member's identity lives in its data dir; a started member without data joins only the
  way its config says: `new` (the initial bootstrap, once a majority of the initial
  cluster runs) or `existing` (an added, not yet started member with its peer URL);
- a removed member's process exits; a member started afresh against a formed cluster with
  `new` config is not a member and never serves;
- added members are learners, one at a time, and only while every voter is up (strict
  reconfig check); a learner is promoted only once it has run for a cycle (in sync);
- removing a voter is refused when the rest would lose quorum; the member list is served by
  any running member even without quorum; /health and keys need quorum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.core.services import ServiceState
from tests.fakeworld.lease import LeaseModel
from tests.fakeworld.machines import FakeMachine, Proc
from tests.fakeworld.wire import CallError

if TYPE_CHECKING:
    from tests.fakeworld.world import FakeWorld

MEMBER_FILE = "member/id"  # under the data dir: which member this data belongs to


@dataclass
class Member:
    id: str
    peer_url: str
    name: str = ""  # set once the member started (etcd learns it then)
    client_url: str = ""
    learner: bool = False
    synced: bool = False  # a learner that caught up with the leader

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ID": self.id, "peerURLs": [self.peer_url]}
        if self.name:
            out["name"] = self.name
            out["clientURLs"] = [self.client_url]
        if self.learner:
            out["isLearner"] = True
        return out


class EtcdModel:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.members: list[Member] = []
        self.keys: dict[str, str] = {}
        self.leases = LeaseModel(self)
        self._next_id = 10_000_000_001

    # ------------------------------------------------------------------ truth

    def _new_id(self) -> str:
        self._next_id += 7919
        return str(self._next_id)

    def member(self, member_id: str | None) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    def serving(self, machine: FakeMachine) -> Member | None:
        """The member this machine's etcd serves as, once it is up."""
        proc = machine.proc("etcd")
        if proc is None or not proc.ready:
            return None
        return self.member(proc.extra.get("member"))

    def voters(self) -> list[Member]:
        return [m for m in self.members if not m.learner]

    def serving_ids(self) -> set[str]:
        return {s.id for m in self.world.machines.values() if (s := self.serving(m))}

    def quorum(self) -> bool:
        voters = self.voters()
        up = [v for v in voters if v.id in self.serving_ids()]
        return bool(voters) and len(up) * 2 > len(voters)

    def healthy(self, machine: FakeMachine) -> bool:
        return self.serving(machine) is not None and self.quorum()

    def endpoint(self, url: str) -> FakeMachine:
        """The machine serving etcd's client API at `url`, or a connection error."""
        for m in self.world.machines.values():
            s = self.serving(m)
            if s is not None and s.client_url == url.rstrip("/"):
                return m
        raise CallError(f"{url}: connection refused")

    # ------------------------------------------------------------------ processes

    def on_start(self, machine: FakeMachine, proc: Proc) -> None:
        proc.extra["config"] = yaml.safe_load(proc.loaded or b"") or {}

    def tick(self) -> None:
        for m in self.world.machines.values():
            proc = m.proc("etcd")
            if proc is None:
                continue
            if "member" not in proc.extra:
                self._join(m, proc)
            elif self.member(proc.extra["member"]) is None:
                proc.state = ServiceState.FAILED  # "the member has been permanently removed"
        self._bootstrap()
        serving = self.serving_ids()
        for member in self.members:
            if member.learner and member.id in serving:
                member.synced = True

    def _data_dir(self, proc: Proc) -> str:
        return str(proc.extra["config"].get("data-dir", "/var/lib/etcd"))

    def _join(self, m: FakeMachine, proc: Proc) -> None:
        cfg = proc.extra["config"]
        peer = str(cfg.get("initial-advertise-peer-urls", ""))
        data = m.files.get(f"{self._data_dir(proc)}/{MEMBER_FILE}")
        if data is not None:
            own = self.member(data.decode())
            if own is None:  # its data names a member the cluster no longer has
                proc.state = ServiceState.FAILED
            else:
                self._become(m, proc, own)
            return
        known = next((x for x in self.members if x.peer_url == peer), None)
        unstarted = known if known is not None and not known.name else None
        state = cfg.get("initial-cluster-state", "new")
        if state == "existing" and unstarted is not None and unstarted.learner:
            self._become(m, proc, unstarted)
        elif state == "new" and unstarted is not None and not unstarted.learner:
            self._become(m, proc, unstarted)  # a late member of the initial cluster
        elif known is not None:
            proc.state = ServiceState.FAILED  # "member ... has already been bootstrapped"
        elif state == "new" and not self.members:
            proc.extra["bootstrapping"] = True  # waits for a majority of its peers
        elif self.members:
            proc.extra["alien"] = True  # not a member of the formed cluster: never serves

    def _become(self, m: FakeMachine, proc: Proc, member: Member) -> None:
        cfg = proc.extra["config"]
        proc.extra["member"] = member.id
        member.name = str(cfg.get("name", m.name))
        member.client_url = str(cfg.get("advertise-client-urls", "")).rstrip("/")
        m.files[f"{self._data_dir(proc)}/{MEMBER_FILE}"] = member.id.encode()

    def _bootstrap(self) -> None:
        """The first members form the cluster once a majority of the initial cluster runs."""
        if self.members:
            return
        waiting = [
            (m, p)
            for m in self.world.machines.values()
            if (p := m.proc("etcd")) is not None and p.extra.get("bootstrapping")
        ]
        if not waiting:
            return
        initial = str(waiting[0][1].extra["config"].get("initial-cluster", ""))
        peers = dict(entry.split("=", 1) for entry in initial.split(",") if "=" in entry)
        same = [(m, p) for m, p in waiting if p.extra["config"].get("initial-cluster") == initial]
        if len(same) * 2 <= len(peers):
            return
        self.members = [Member(self._new_id(), url) for url in peers.values()]
        for m, p in same:
            p.extra.pop("bootstrapping")
            url = p.extra["config"].get("initial-advertise-peer-urls")
            member = next((x for x in self.members if x.peer_url == url), None)
            if member is not None:
                self._become(m, p, member)

    # ------------------------------------------------------------------ API (client URLs)

    def member_list(self, url: str) -> dict[str, Any]:
        self.endpoint(url)
        return {"members": [m.json() for m in self.members]}

    def _need_quorum(self, url: str) -> None:
        self.endpoint(url)
        if not self.quorum():
            raise CallError(f"{url}: etcdserver: no leader", status=503)

    def add(self, url: str, peer_url: str, learner: bool) -> dict[str, Any]:
        self._need_quorum(url)
        if any(peer_url == m.peer_url for m in self.members):
            raise CallError("etcdserver: Peer URLs already exists", status=412)
        if learner and any(m.learner for m in self.members):
            raise CallError("etcdserver: too many learner members in cluster", status=412)
        if any(v.id not in self.serving_ids() for v in self.voters()):
            raise CallError("etcdserver: unhealthy cluster", status=503)
        member = Member(self._new_id(), peer_url, learner=learner)
        self.members.append(member)
        return {"member": member.json()}

    def promote(self, url: str, member_id: str) -> dict[str, Any]:
        self._need_quorum(url)
        member = self.member(member_id)
        if member is None:
            raise CallError("etcdserver: member not found", status=404)
        if not member.learner:
            raise CallError("etcdserver: can only promote a learner member", status=412)
        if not member.synced:
            raise CallError(
                "etcdserver: can only promote a learner member which is in sync with leader",
                status=412,
            )
        member.learner = False
        return {"members": [m.json() for m in self.members]}

    def remove(self, url: str, member_id: str) -> dict[str, Any]:
        self._need_quorum(url)
        member = self.member(member_id)
        if member is None:
            raise CallError("etcdserver: member not found", status=404)
        if not member.learner:
            rest = [v for v in self.voters() if v.id != member_id]
            up = [v for v in rest if v.id in self.serving_ids()]
            if not rest or len(up) * 2 <= len(rest):
                raise CallError(
                    "etcdserver: re-configuration failed due to not enough started members",
                    status=412,
                )
        self.members.remove(member)
        return {"members": [m.json() for m in self.members]}

    def get(self, url: str, key: str) -> str | None:
        self._need_quorum(url)
        return self.keys.get(key)

    def delete_if(
        self,
        url: str,
        key: str,
        value: str,
        guard: LeaseGuard | None = None,
        put: Mapping[str, str] | None = None,
    ) -> bool:
        self._need_quorum(url)
        if self.keys.get(key) != value or not self.leases.guard_holds(guard):
            return False
        del self.keys[key]
        self.keys.update(put or {})
        return True

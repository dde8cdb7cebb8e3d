"""The Controller's claim on its cluster: the operator lock (the state dir's flock) and the
leader lease in etcd, and what the cycle asks of them (role, may it act now).

A mixin of Controller (shell/controller.py): the claim itself is shell/leadership.py's;
this is only how one controller takes, holds and gives it back.
"""

from __future__ import annotations

from pathlib import Path

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.leadership import Role
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Topology
from pgha_operator.shell.clients import Clients
from pgha_operator.shell.leadership import Leadership, LeaseHeld
from pgha_operator.shell.providers.base import Provider
from pgha_operator.shell.state import LockHeld, StateDir

__all__ = ["OperatorClaim"]


class OperatorClaim:
    """Controller's lock and lease hooks; `leadership` is None until claimed or standing by."""

    # Provided by Controller.
    state: StateDir
    state_dir: Path
    provider: Provider
    clients: Clients
    leadership: Leadership | None
    cluster: Cluster
    topology: Topology

    def prepare(self, standby: bool = False) -> None:
        """Checks before anything starts; takes the operator lock of this cluster (the flock,
        and the leader lease once etcd answers). `standby` (run): waits for both instead."""
        self.provider.preflight()
        if standby:
            self.stand_by()
        else:
            self.lock()

    def stand_by(self, who: str = "run") -> Leadership:
        """`run`: claim nothing yet; the loop takes the flock and the lease when it can."""
        self.leadership = self._leadership(who)
        return self.leadership

    def lock(self, who: str = "operator") -> None:
        """For one-shot commands: act only as the cluster's one operator, or refuse. Taken
        again by the same controller, it keeps its claim (like the flock)."""
        leadership = self.leadership or self._leadership(who)
        try:
            leadership.claim()
        except LockHeld as exc:
            raise PermanentError(
                f"another operator ({exc.holder}) already manages cluster {self.cluster.name} "
                f"from {self.state_dir}; stop it first"
            ) from None
        except LeaseHeld as exc:
            raise PermanentError(
                f"another operator ({exc.holder}) leads cluster {self.cluster.name} "
                f"(its lease in etcd, {exc.key}); stop it first"
            ) from None
        self.leadership = leadership

    def unlock(self) -> None:
        if self.leadership is not None:
            self.leadership.release()
            self.leadership = None
        self.state.operator_lock.release()

    def _leadership(self, who: str) -> Leadership:
        return Leadership(
            self.state, self.cluster.name, lambda: self.topology.etcd_client_urls, self.clients, who
        )

    @property
    def role(self) -> Role:
        """leader or standby, for status and metrics; a controller without a claim (tests,
        read-only commands) counts as leader: nothing else gates it."""
        return self.leadership.role if self.leadership is not None else Role.LEADER

    def may_act(self) -> bool:
        """Right now: this operator holds the lease (or the flock decides, before etcd)."""
        return self.leadership is None or self.leadership.may_act()

    def _may_act_now(self) -> bool:
        """Leadership, level-based, every acting cycle after the observation: the key is
        read (and campaigned for when free)."""
        if self.leadership is None:
            return True
        return self.leadership.refresh().act

"""The operator's state dir, and the only code that opens its files by name.

    secrets.yaml (+ .bak)   generated passwords, declared roles' too (secrets_store)
    cluster-id              the cluster's identity, recorded on the hosts it owns (identity)
    passfiles/<role>        libpq passfiles of the login roles (passfiles)
    rotation.yaml           old passwords while a rotation's ALTER ROLE is pending
    tls/                    the cluster's CA and certificates (pki)
    last-applied.yaml       the manifest in force (last_applied)
    status.json             what the acting operator saw last
    down/<machine>.json     drill marks: do not repair this machine (marks)
    fences.json             the timeline of the last fences, for the drill (fence_journal)
    reinit.json             the operator's reinitialisations of replicas (reinit_history)
    imported.json           made by `state import`: a standby's state dir (transfer)
    operator.lock           held by whoever acts on the cluster (lock)
    switchover.lock         held for the length of a switchover (lock)
    rotation.lock           held for the length of `rotate passwords` (lock)
    backup.lock             held for the length of a backup (shell/backups.py)

Providers keep their machines under it too (machines/, vagrant/...), through their own
modules. Read-only commands (`plan`, `status`, `render`, `dsn`) use only the methods that
create nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pgha_operator.core.actions import Action
from pgha_operator.core.desired import PLACEHOLDER_SECRETS
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.reinit import ReinitRecord
from pgha_operator.core.render import Secrets
from pgha_operator.core.spec import Cluster, LoadedCluster
from pgha_operator.core.tls import TlsMaterial
from pgha_operator.core.topology import Topology
from pgha_operator.shell.clients.tls import ClientTls
from pgha_operator.shell.state import (
    last_applied,
    passfiles,
    pki,
    reinit_history,
    rotation_store,
    secrets_store,
    transfer,
)
from pgha_operator.shell.state.errors import StateError
from pgha_operator.shell.state.fence_journal import read_fences, record_fence
from pgha_operator.shell.state.lock import (
    OPERATOR_LOCK,
    ROTATION_LOCK,
    SWITCHOVER_LOCK,
    FileLock,
    LockHeld,
)
from pgha_operator.shell.state.marks import clear_down, down_machines, mark_down
from pgha_operator.shell.state.status_file import STATUS_FILE, read_status, write_status

__all__ = [
    "LockHeld",
    "StateDir",
    "StateError",
    "clear_down",
    "down_machines",
    "mark_down",
]

# Files whose presence means a cluster was created from this state dir.
_CLUSTER_EVIDENCE = (last_applied.FILE_NAME, STATUS_FILE)
_MACHINE_DIRS = ("machines", "vagrant")


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.operator_lock = FileLock(path / OPERATOR_LOCK)
        self.switchover_lock = FileLock(path / SWITCHOVER_LOCK)
        self.rotation_lock = FileLock(path / ROTATION_LOCK)
        self._read_cache: tuple[tuple[int, int, int], Secrets] | None = None
        self._write_cache: tuple[tuple[int, int, int], Secrets] | None = None
        # (cluster object, file stat) of the last-applied we wrote: the same accepted cluster
        # (the parse memo keeps its object) over an untouched file is not rendered again.
        self._last_applied_saved: tuple[Cluster, tuple[int, int, int] | None] | None = None
        self._tls_cache: tuple[Any, pki.Issued] | None = None

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.is_dir()

    def may_bootstrap(self) -> bool:
        """False for a state dir made by `state import` (a standby's): its operator acts
        only under the leader lease (shell/state/transfer.py)."""
        return not (self.path / transfer.IMPORTED_MARK).exists()

    def holds_cluster(self) -> bool:
        """Whether a cluster was created from here (its passwords must not change)."""
        return (self.path / secrets_store.BACKUP_NAME).exists() or self.made_cluster()

    def made_cluster(self) -> bool:
        """Whether an apply got as far as machines (a secrets file alone, written by `dsn`
        or `rotate` before any apply, is no cluster)."""
        if any((self.path / name).exists() for name in _CLUSTER_EVIDENCE):
            return True
        return any(
            (self.path / d).is_dir() and any((self.path / d).iterdir()) for d in _MACHINE_DIRS
        )

    # --- secrets --------------------------------------------------------------------------------

    def has_secrets(self) -> bool:
        return (self.path / secrets_store.FILE_NAME).exists()

    def secrets(self) -> Secrets | None:
        """The generated passwords, None before the first apply (reads only; re-read only
        when the file changes). Raises StateError for a damaged file."""
        key = self._secrets_key()
        if key is None:
            return None
        if self._read_cache and self._read_cache[0] == key:
            return self._read_cache[1]
        found = secrets_store.read_secrets(self.path)
        if found is not None:
            self._read_cache = (key, found)
        return found

    def secrets_or_placeholder(self) -> Secrets:
        """For read-only views: the real passwords, or placeholders before the first apply."""
        return self.secrets() or PLACEHOLDER_SECRETS

    def load_or_create_secrets(self, roles: Iterable[str] = ()) -> Secrets:
        """For the operator that acts: generated on a new cluster, refused (StateError) when
        an existing cluster's file is missing or damaged. Keeps secrets.yaml.bak in step.
        `roles`: declared login roles, each given a password the first time it is named."""
        roles = tuple(roles)
        key = self._secrets_key()
        if key is not None and self._write_cache and self._write_cache[0] == key:
            cached = self._write_cache[1]
            if all(cached.role_password(r) is not None for r in roles):
                return cached
        found = secrets_store.load_or_create(self.path, self.holds_cluster(), roles)
        key = self._secrets_key()
        assert key is not None  # load_or_create wrote it or raised
        self._write_cache = (key, found)
        return found

    # --- passfiles ------------------------------------------------------------------------------

    def passfile(self, role: str) -> Path:
        """Where `role`'s libpq passfile is (it may not exist yet: apply writes it)."""
        return passfiles.path_of(self.path, role)

    def sync_passfiles(self, wanted: Mapping[str, str]) -> list[str]:
        """Keep a passfile per login role (role -> text), each written only when it changes."""
        return passfiles.sync(self.path, wanted)

    # --- password rotation ----------------------------------------------------------------------

    def pending_rotation(self) -> dict[str, str] | None:
        """The old passwords of roles whose ALTER ROLE is pending (None: no rotation runs)."""
        return rotation_store.read_previous(self.path)

    def begin_rotation(self, new: Secrets, previous: dict[str, str]) -> None:
        """Save rotated passwords: the old ones first (rotation.yaml), then secrets.yaml and
        its copy, so a crash at any point leaves the old passwords findable."""
        rotation_store.write_previous(self.path, previous)
        secrets_store.save(self.path, new)

    def end_rotation(self) -> None:
        """Every pending ALTER ROLE is done: the new passwords are the ones in force."""
        rotation_store.clear(self.path)

    def _secrets_key(self) -> tuple[int, int, int] | None:
        return self._stat(secrets_store.FILE_NAME)

    def _stat(self, name: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path / name)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    # --- certificates -------------------------------------------------------------------------

    def issue_tls(self, cluster: Cluster, topo: Topology, now: datetime) -> pki.Issued:
        """For the operator that acts: the certificates, issued or renewed when due. Looked
        at again when the manifest, a file under tls/ or the hour changes: expiry is
        counted in days, so an hour's staleness costs nothing."""
        key = (cluster, topo, self._tls_stats(), int(now.timestamp() // 3600))
        if self._tls_cache is not None and self._tls_cache[0] == key:
            return self._tls_cache[1]
        if not (self.path / pki.DIR_NAME).is_dir() and self.made_cluster():
            raise pki.created_before_tls(self.path, cluster.name)
        issued = pki.load_or_issue(self.path, cluster, topo, now)
        key = (cluster, topo, self._tls_stats(), int(now.timestamp() // 3600))
        self._tls_cache = (key, issued)
        return issued

    def tls(self, topo: Topology) -> TlsMaterial | None:
        """For reading: the issued certificates, None before the first apply."""
        return pki.read_material(self.path, topo)

    def certificates_end(self) -> datetime | None:
        """For reading: when the first issued certificate ends, None before any was."""
        return pki.earliest_end(self.path)

    def client_tls(self) -> ClientTls:
        return pki.client_files(self.path)

    def _tls_stats(self) -> tuple[tuple[str, int, int], ...]:
        folder = self.path / pki.DIR_NAME
        if not folder.is_dir():
            return ()
        return tuple(
            (str(p), st.st_ino, st.st_mtime_ns)
            for p in sorted(folder.rglob("*"))
            if (st := p.stat()) and p.is_file()
        )

    # --- last applied, status -------------------------------------------------------------------

    def last_applied(self, cluster_name: str | None) -> LoadedCluster | None:
        return last_applied.read(self.path, cluster_name)

    def save_last_applied(self, cluster: Cluster) -> None:
        stat = self._stat(last_applied.FILE_NAME)
        saved = self._last_applied_saved
        if saved and saved[0] is cluster and saved[1] == stat and stat is not None:
            return
        last_applied.save(self.path, cluster)
        self._last_applied_saved = (cluster, self._stat(last_applied.FILE_NAME))

    def write_status(self, status: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_status(self.path, status)

    def read_status(self) -> dict[str, Any] | None:
        return read_status(self.path)

    # --- down marks -----------------------------------------------------------------------------

    def down(self, now: float | None = None) -> frozenset[str]:
        return down_machines(self.path, now)

    def mark_down(self, machine: str, seconds: float, reason: str) -> Path:
        return mark_down(self.path, machine, seconds, reason)

    def clear_down(self, machine: str) -> None:
        clear_down(self.path, machine)

    # --- fence journal ---------------------------------------------------------------------------

    def record_fence(self, record: dict[str, Any]) -> None:
        record_fence(self.path, record)

    def fences(self) -> list[dict[str, Any]]:
        return read_fences(self.path)

    # --- reinitialisations ---------------------------------------------------------------------

    def reinits(self) -> dict[str, ReinitRecord]:
        """Read every cycle (read-only commands too: reading writes nothing)."""
        return reinit_history.load(self.path)

    def record_reinits(self, observed: Observed, done: Iterable[Action], now: float) -> None:
        """After executing: count the reinitialisations just done, forget healed members."""
        reinit_history.update(self.path, observed, done, now)

    # --- locks ----------------------------------------------------------------------------------

    def operator_running(self) -> str | None:
        """Who holds the operator lock (None: nobody), creating nothing."""
        return self.operator_lock.holder()

    def remove(self) -> None:
        """Delete the state dir (destroy), releasing our locks first."""
        self.operator_lock.release()
        self.switchover_lock.release()
        self.rotation_lock.release()
        if self.path.exists():
            shutil.rmtree(self.path)

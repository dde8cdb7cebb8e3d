"""Which manifest is in force: load it, hold a live cluster to its creation-time fields,
keep the last good one while an edit is refused, count generations."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import structlog

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.spec import (
    Cluster,
    LoadedCluster,
    ManifestError,
    Problem,
    fixed_field_changes,
    load,
)
from pgha_operator.shell.providers.local import default_state_dir
from pgha_operator.shell.restore_source import refuse_missing_source
from pgha_operator.shell.state import StateDir, StateError

log = structlog.get_logger("pgha-operator")


def load_one(paths: Sequence[str], name: str | None = None) -> LoadedCluster:
    """The one cluster the command is about; several in the files need `--cluster`."""
    loaded = load(paths)
    if name:
        loaded = [item for item in loaded if item.cluster.name == name]
        if not loaded:
            raise PermanentError(f"no cluster named {name!r} in {', '.join(paths)}")
    if len(loaded) > 1:
        names = ", ".join(item.cluster.name for item in loaded)
        raise PermanentError(f"{', '.join(paths)} define clusters {names}: pick one with --cluster")
    return loaded[0]


def refuse_fixed_changes(running: Cluster, loaded: LoadedCluster) -> None:
    changes = fixed_field_changes(running, loaded.cluster)
    if changes:
        raise ManifestError([Problem(loaded.source, path, reason) for path, reason in changes])


class ManifestInForce:
    """The accepted manifest of one cluster and its state dir.

    `fall_back` (status, destroy): while the manifest is refused, the running cluster's
    last-applied manifest stands in, and a damaged last-applied file is reported in
    `state_error` instead of raised."""

    def __init__(
        self,
        paths: Sequence[str],
        state_dir: Path | None,
        cluster_name: str | None,
        fall_back: bool,
    ) -> None:
        self.paths = list(paths)
        self.cluster_name = cluster_name
        self.manifest_error: str | None = None
        self.state_error: str | None = None
        self.generation = 0
        self._spec_hash = ""
        try:
            self.loaded = load_one(self.paths, cluster_name)
        except ManifestError as exc:
            # `status` must still work while a refused edit sits in the manifest.
            running = self._last_applied(state_dir, cluster_name) if fall_back else None
            if running is None:
                raise
            self.loaded, self.manifest_error = running, str(exc)
        self.state = StateDir(state_dir or default_state_dir(self.loaded.cluster.name))
        if not self.manifest_error:
            self._hold_fixed_fields(fall_back)
        self.cluster: Cluster = self.loaded.cluster
        self._accept(self.cluster)

    @staticmethod
    def _last_applied(state_dir: Path | None, name: str | None) -> LoadedCluster | None:
        if state_dir is None:
            return None  # the default state dir is named after the cluster: unknown here
        try:
            return StateDir(state_dir).last_applied(name)
        except StateError:
            return None  # the manifest's own error is the one to show

    def _hold_fixed_fields(self, fall_back: bool) -> None:
        """A manifest that changes a creation-time field of the running cluster is refused."""
        try:
            running = self.state.last_applied(self.loaded.cluster.name)
        except StateError as exc:
            if not fall_back:
                raise
            self.state_error = str(exc)
            return
        if running is None:
            if not fall_back:  # a cluster to create: its restore source must be there
                refuse_missing_source(self.loaded)
            return
        try:
            refuse_fixed_changes(running.cluster, self.loaded)
        except ManifestError as exc:
            if not fall_back:
                raise
            self.loaded, self.manifest_error = running, str(exc)

    def _accept(self, cluster: Cluster) -> None:
        if cluster is self.cluster and self._spec_hash:
            return  # the same accepted object (the parse memo): its generation stands
        spec_hash = hashlib.sha256(cluster.model_dump_json().encode()).hexdigest()
        if spec_hash != self._spec_hash:
            self.generation += 1
            self._spec_hash = spec_hash
        self.cluster = cluster

    def reload(self) -> bool:
        """Re-read the manifest; keep the last good one when the new one is refused.
        True when the accepted cluster changed."""
        try:
            loaded = load_one(self.paths, self.cluster_name or self.cluster.name)
            if loaded.cluster.name != self.cluster.name:
                raise PermanentError(
                    f"the manifest now names cluster {loaded.cluster.name!r}; this operator "
                    f"manages {self.cluster.name!r}"
                )
            refuse_fixed_changes(self.cluster, loaded)
        except (ManifestError, PermanentError) as exc:
            message = str(exc)
            if message != self.manifest_error:
                log.error(
                    "manifest refused; the last accepted manifest stays in force", error=message
                )
            self.manifest_error = message
            return False
        if self.manifest_error:
            log.info("manifest accepted again")
        self.manifest_error = None
        before = self.generation
        self._accept(loaded.cluster)
        return self.generation != before

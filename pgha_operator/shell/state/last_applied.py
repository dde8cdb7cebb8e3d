"""`last-applied.yaml`: the manifest the running cluster was built from.

It holds a live cluster to its creation-time fields (spec.FIXED_FIELDS) and lets `status`
and `destroy` act on the running cluster while an edit is refused. The first line carries
a checksum of the rest, so a truncated or damaged file is reported instead of silently
switching that guard off. A file that is valid YAML but not a manifest this version
accepts (written by another version of the operator, or before the checksum line) does
not block: there is nothing to hold the new manifest to, and a warning says so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import structlog
import yaml

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.spec import Cluster, LoadedCluster, ManifestError, parse_text
from pgha_operator.shell.state.atomic import write_atomic
from pgha_operator.shell.state.errors import StateError

log = structlog.get_logger("pgha-operator")

FILE_NAME = "last-applied.yaml"
HEADER = "# pgha-operator last-applied sha256="


def render(cluster: Cluster) -> str:
    body = yaml.safe_dump(
        cluster.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False
    )
    return f"{HEADER}{_digest(body)}\n{body}"


def save(folder: Path, cluster: Cluster) -> None:
    """Record `cluster` as the one in force (written only when it changed)."""
    path = folder / FILE_NAME
    text = render(cluster)
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())


def read(folder: Path, cluster_name: str | None) -> LoadedCluster | None:
    """The cluster in force (None for the name: the only one recorded), or None when none
    was recorded (or by another version).
    Raises StateError when the file is damaged."""
    path = folder / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise StateError(path, f"cannot be read ({reason})", REMEDY) from None
    first, _, body = text.partition("\n")
    if first.startswith(HEADER) and first[len(HEADER) :] != _digest(body):
        raise StateError(path, "is damaged (its checksum does not match: truncated?)", REMEDY)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise StateError(path, "is damaged (not YAML)", REMEDY) from None
    if not isinstance(doc, dict):
        raise StateError(path, "is damaged (empty, or not a manifest)", REMEDY)
    loaded, problems = parse_text(text, str(path))
    match = [item for item in loaded if cluster_name in (None, item.cluster.name)]
    if problems or len(match) != 1:
        why = (
            ManifestError(problems)
            if problems
            else PermanentError(f"no single cluster {cluster_name or ''}")
        )
        log.warning(
            "last-applied manifest not understood (another operator version?); creation-time "
            "fields are not checked until the next apply rewrites it",
            file=str(path),
            reason=str(why).splitlines()[0],
        )
        return None
    return match[0]


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


REMEDY = (
    "It records the manifest the running cluster was built from, so that a change to a "
    "creation-time field (spec.provider.type, spec.patroni.source) is refused. Check "
    "that your manifest keeps those fields as the cluster was created, then delete the file: "
    "the operator writes it again from the manifest it accepts"
)

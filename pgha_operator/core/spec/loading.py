"""Loading manifests: files and directories to validated clusters, or every problem found
with its file, field path and line. Reading the manifest files is the only I/O in core, and
it happens before anything on a cluster is touched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pgha_operator.core.spec.models import DEFER_RULES, MANIFEST_DIR, Cluster
from pgha_operator.core.spec.problems import ManifestError, Problem, show_value
from pgha_operator.core.spec.rules import cluster_problems, cluster_warnings
from pgha_operator.core.spec.wording import validation_problems
from pgha_operator.core.spec.yaml_nodes import (
    compose_documents,
    duplicate_keys,
    line_of,
    split_path,
    syntax_reason,
)


@dataclass(frozen=True)
class LoadedCluster:
    cluster: Cluster
    source: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    line: int | None = None  # line of metadata.name in source


def manifest_files(path: str | Path) -> list[Path]:
    """A file, or every *.yaml / *.yml file of a directory (sorted, not recursive,
    hidden files skipped). Raises OSError when a directory cannot be listed."""
    p = Path(path)
    if p.is_dir():
        return sorted(
            f
            for f in p.iterdir()
            if f.suffix in (".yaml", ".yml") and not f.name.startswith(".") and f.is_file()
        )
    return [p]


def load(paths: Sequence[str | Path] | str | Path) -> list[LoadedCluster]:
    """Load and validate every cluster in the given files/directories, or raise ManifestError."""
    if isinstance(paths, str | Path):
        paths = [paths]
    loaded, problems = _load_files(paths)
    problems.extend(_names_defined_twice(loaded))
    if not loaded and not problems:
        problems.append(
            Problem(", ".join(str(p) for p in paths) or "(no path)", "", "defines no cluster")
        )
    if problems:
        raise ManifestError(problems)
    return loaded


def _load_files(paths: Sequence[str | Path]) -> tuple[list[LoadedCluster], list[Problem]]:
    problems: list[Problem] = []
    loaded: list[LoadedCluster] = []
    for given in paths:
        try:
            files = manifest_files(given)
        except OSError as exc:
            problems.append(Problem(str(given), "", f"cannot list directory: {_os_reason(exc)}"))
            continue
        if not files:
            problems.append(Problem(str(given), "", "no *.yaml manifest in this directory"))
        for f in files:
            text = _read(f)
            if isinstance(text, Problem):
                problems.append(text)
                continue
            got, found = parse_text(text, str(f))
            loaded.extend(got)
            problems.extend(found)
    return loaded, problems


def _read(path: Path) -> str | Problem:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        return Problem(str(path), "", f"cannot read: {_os_reason(exc)}")
    except UnicodeDecodeError as exc:
        return Problem(str(path), "", f"not UTF-8 text (byte {exc.start})")


def _names_defined_twice(loaded: Sequence[LoadedCluster]) -> list[Problem]:
    problems = []
    by_name: dict[str, LoadedCluster] = {}
    for item in loaded:
        first = by_name.setdefault(item.cluster.name, item)
        if first is not item:
            where = f"{first.source}:{first.line}" if first.line else first.source
            problems.append(
                Problem(
                    item.source,
                    "metadata.name",
                    f"cluster {item.cluster.name!r} is also defined in {where}",
                    item.line,
                )
            )
    return problems


def _os_reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def parse_text(text: str, source: str) -> tuple[list[LoadedCluster], list[Problem]]:
    """Parse every YAML document of one file; returns the clusters and the problems.

    Memoised by content: the loop re-reads its manifest every cycle, and parsing it (YAML
    with line numbers, then validation) costs ~1 ms of CPU for a text that rarely changes.
    The results are frozen; the lists are the caller's own."""
    loaded, problems = _parse_text_cached(text, source)
    return list(loaded), list(problems)


@lru_cache(maxsize=16)
def _parse_text_cached(
    text: str, source: str
) -> tuple[tuple[LoadedCluster, ...], tuple[Problem, ...]]:
    loaded, problems = _parse_text(text, source)
    return tuple(loaded), tuple(problems)


def _parse_text(text: str, source: str) -> tuple[list[LoadedCluster], list[Problem]]:
    try:
        pairs = compose_documents(text)
    except yaml.YAMLError as exc:
        reason, line = syntax_reason(exc)
        return [], [Problem(source, "", reason, line)]
    loaded: list[LoadedCluster] = []
    problems: list[Problem] = []
    names: dict[str, int | None] = {}  # cluster name -> line of its first definition
    several = len(pairs) > 1
    for index, (node, doc) in enumerate(pairs):
        if doc is None:
            continue
        document = _Document(source, node, index + 1 if several else None)
        cluster, found = _check_document(document, doc, names)
        problems.extend(found)
        if cluster is not None:
            loaded.append(cluster)
    return loaded, problems


@dataclass(frozen=True)
class _Document:
    """One YAML document of a file: where its problems point."""

    source: str
    node: yaml.Node
    number: int | None  # 1-based, only when the file holds several documents

    def problem(self, path: str, reason: str) -> Problem:
        line = line_of(self.node, split_path(path) if path else [])
        return Problem(self.source, path, reason, line, self.number)


def _check_document(
    document: _Document, doc: Any, names: dict[str, int | None]
) -> tuple[LoadedCluster | None, list[Problem]]:
    """Validate one document: the cluster, or the problems that refuse it. Records the
    cluster's name in `names` to catch a second definition in the same file."""
    if not isinstance(doc, dict):
        reason = f"a manifest must be a mapping (apiVersion, kind, …), got {show_value(doc)}"
        return None, [document.problem("", reason)]
    found = [document.problem(p, r) for p, r in duplicate_keys(document.node)]
    try:
        cluster = Cluster.model_validate(
            doc, by_alias=True, by_name=False, context={DEFER_RULES: True, **_where(document)}
        )
    except ValidationError as exc:
        return None, found + [document.problem(p, r) for p, r in validation_problems(exc)]
    found.extend(document.problem(p, r) for p, r in cluster_problems(cluster))
    found.extend(document.problem(p, r) for p, r in _topology_problems(cluster))
    name_line = line_of(document.node, ["metadata", "name"])
    if cluster.name in names:
        first = names[cluster.name]
        found.append(
            document.problem(
                "metadata.name",
                f"cluster {cluster.name!r} is also defined in this file"
                + (f" (line {first})" if first else ""),
            )
        )
    names.setdefault(cluster.name, name_line)
    if found:
        return None, found
    warnings = tuple(
        f"{document.source}: {path}: {reason}" for path, reason in cluster_warnings(cluster)
    )
    return LoadedCluster(cluster, document.source, warnings, name_line), []


def _topology_problems(cluster: Cluster) -> list[tuple[str, str]]:
    # Imported here: topology imports this package's models.
    from pgha_operator.core.topology import topology_problems

    return topology_problems(cluster)


def _where(document: _Document) -> dict[str, str]:
    """Relative paths in a manifest (spec.tls.ca) are relative to its file's folder."""
    return {MANIFEST_DIR: str(Path(document.source).absolute().parent)}

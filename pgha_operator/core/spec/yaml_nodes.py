"""The YAML as composed nodes: each document with its line numbers, duplicate keys (which
`safe_load` silently collapses) and the line of a field path."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from pgha_operator.core.spec.problems import path_part


def compose_documents(text: str) -> list[tuple[yaml.Node, Any]]:
    """Every document as (node, data): nodes carry the lines, data is what safe_load gives."""
    loader = yaml.SafeLoader(text)
    try:
        pairs = []
        while loader.check_node():
            node = loader.get_node()
            pairs.append((node, loader.construct_document(node)))
        return pairs
    finally:
        loader.dispose()


def duplicate_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """YAML silently keeps the last of two equal keys; a manifest must not rely on that."""
    seen_nodes: set[int] = set()

    def walk(n: yaml.Node, where: tuple[str, ...]) -> Iterator[tuple[str, str]]:
        if id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in n.value:
                k = str(key.value)
                if key.tag == "tag:yaml.org,2002:merge":
                    continue
                if k in first:
                    yield (
                        ".".join((*where, path_part(k))),
                        f"duplicate key {k!r} (first on line {first[k]}); "
                        "YAML would silently keep only the last one",
                    )
                first.setdefault(k, key.start_mark.line + 1)
                yield from walk(value, (*where, path_part(k)))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                yield from walk(item, (*where, str(i)))

    return walk(node, path)


# A quoted part (problems.path_part writes Python's repr) or a run of characters up to a '.'.
_PATH_PART = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^.]+""")


def split_path(path: str) -> list[str]:
    """The keys of a field path such as `spec.postgres.parameters.'pg_stat_statements.max'`."""
    return [_unquote(part) for part in _PATH_PART.findall(path)]


def _unquote(part: str) -> str:
    if part[0] not in "'\"":
        return part
    try:
        return str(ast.literal_eval(part))
    except (SyntaxError, ValueError):
        return part


def line_of(node: yaml.Node | None, path: Sequence[str]) -> int | None:
    """The 1-based line of a field path in the composed YAML, as deep as it exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in reversed(node.value) if str(k.value) == part), None)
            if pair is None:
                break
            line = pair[0].start_mark.line + 1
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def syntax_reason(exc: yaml.YAMLError) -> tuple[str, int | None]:
    """Why the YAML could not be read, and the line where it broke when known."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"YAML error: {exc}", None
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    reason = f"YAML syntax error: {exc.problem or exc.context or 'unreadable YAML'}"
    if exc.problem and exc.context and exc.context_mark and exc.problem_mark:
        reason += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    return reason, line

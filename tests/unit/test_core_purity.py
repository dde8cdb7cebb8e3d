"""The boundary of the house: nothing in `pgha_operator/core/` does I/O beyond reading.

Every module of core (found by walking the folder, so a new one is covered without editing
this test) is parsed with `ast` and refused, naming module and line, when it imports a
network, process, thread or logging library or the shell/cli/drill layers, or when it writes,
moves, removes or creates files or runs commands. Reading manifests and templates is allowed.
The checker is tested on snippets too, so a checker that finds nothing cannot pass unseen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "pgha_operator" / "core"

FORBIDDEN_MODULES = (
    "requests",
    "subprocess",
    "socket",
    "paramiko",
    "psycopg",
    "etcd3gw",
    "urllib.request",
    "http.client",
    "shutil",
    "fcntl",
    "threading",
    "concurrent",
    "structlog",
    "watchfiles",
    "tempfile",
    "pgha_operator.shell",
    "pgha_operator.cli",
    "pgha_operator.drill",
)

# os functions that write, move, remove, create or run something.
FORBIDDEN_OS_CALLS = frozenset(
    {
        "replace",
        "rename",
        "renames",
        "remove",
        "unlink",
        "rmdir",
        "removedirs",
        "mkdir",
        "makedirs",
        "chmod",
        "chown",
        "link",
        "symlink",
        "truncate",
        "write",
        "system",
        "popen",
        "fork",
        "kill",
        "execv",
        "execvp",
        "execve",
        "spawnv",
        "spawnvp",
    }
)
# Methods (pathlib and friends) whose names mean a write whatever the object.
FORBIDDEN_METHODS = frozenset(
    {
        "write_text",
        "write_bytes",
        "mkdir",
        "makedirs",
        "touch",
        "unlink",
        "rmdir",
        "rename",
        "chmod",
        "symlink_to",
        "hardlink_to",
    }
)
WRITE_MODES = frozenset("wax+")
MODULES_WITH_OPEN = frozenset({"io", "builtins", "codecs", "gzip", "bz2", "lzma"})
OS_OPEN_WRITE_FLAGS = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"})


def _forbidden_module(name: str) -> str | None:
    for banned in FORBIDDEN_MODULES:
        if name == banned or name.startswith(banned + "."):
            return banned
    return None


def _absolute(node: ast.ImportFrom, module_name: str, is_package: bool) -> str:
    """The absolute module of `from X import ...`, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = module_name.split(".")
    if not is_package:
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _import_violations(node: ast.AST, module_name: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        os_calls: list[str] = []
    elif isinstance(node, ast.ImportFrom):
        module = _absolute(node, module_name, is_package)
        names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        os_calls = [a.name for a in node.names if module == "os" and a.name in FORBIDDEN_OS_CALLS]
    else:
        return []
    banned = sorted({b for b in map(_forbidden_module, names) if b})
    return [f"imports {b}" for b in banned] + [f"imports os.{name}" for name in os_calls]


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _open_violation(call: ast.Call, func: ast.expr) -> str | None:
    """open()/Path.open()/io.open() with a mode that writes (a non-literal mode counts)."""
    owner = None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner = func.value.id
    if owner == "os":  # os.open(path, flags): look at the flags
        flags = {n.attr for n in ast.walk(call) if isinstance(n, ast.Attribute)}
        return "os.open() for writing" if flags & OS_OPEN_WRITE_FLAGS else None
    # Path.open(mode) takes the mode first; open(), io.open(), gzip.open() take it second.
    path_open = isinstance(func, ast.Attribute) and owner not in MODULES_WITH_OPEN
    position = 0 if path_open else 1
    mode_node = next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode_node is None and len(call.args) > position:
        mode_node = call.args[position]
    if mode_node is None:
        return None  # default mode "r"
    mode = _literal(mode_node)
    if mode is None:
        return "open() with a mode that is not a literal (cannot prove it only reads)"
    return f"open() in mode {mode!r}" if set(mode) & WRITE_MODES else None


def _call_violation(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        if func.id == "open":
            return _open_violation(call, func)
        if func.id == "__import__":
            banned = _forbidden_module(_literal(call.args[0] if call.args else None) or "")
            return f"imports {banned} dynamically" if banned else None
        return None
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value.id if isinstance(func.value, ast.Name) else None
    if func.attr == "import_module":
        banned = _forbidden_module(_literal(call.args[0] if call.args else None) or "")
        return f"imports {banned} dynamically" if banned else None
    if func.attr == "open":
        return _open_violation(call, func)
    if owner == "os" and func.attr in FORBIDDEN_OS_CALLS:
        return f"calls os.{func.attr}()"
    if func.attr in FORBIDDEN_METHODS:
        return f"calls .{func.attr}()"
    return None


def violations(source: str, module_name: str, is_package: bool = False) -> list[str]:
    """Every I/O the core must not do in this source, as 'line N: what'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        for what in _import_violations(node, module_name, is_package):
            found.append(f"line {line}: {what}")
        if isinstance(node, ast.Call):
            what = _call_violation(node)
            if what:
                found.append(f"line {line}: {what}")
    return sorted(found, key=lambda text: int(text.split(":")[0].removeprefix("line ")))


def core_modules() -> list[tuple[str, Path]]:
    """(dotted name, file) of every module under pgha_operator/core/."""
    modules = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.append((".".join(parts), path))
    return modules


MODULES = core_modules()


def test_the_walk_finds_every_kind_of_core_module() -> None:
    names = {name for name, _ in MODULES}
    for expected in (
        "pgha_operator.core",
        "pgha_operator.core.spec",
        "pgha_operator.core.spec.loading",
        "pgha_operator.core.plan",
        "pgha_operator.core.render.patroni",
        "pgha_operator.core.facts.types",
        "pgha_operator.core.status",
    ):
        assert expected in names
    assert len(MODULES) >= 30


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_core_module_does_no_io(name: str, path: Path) -> None:
    found = violations(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    assert not found, "\n".join(f"{path.relative_to(REPO)} {what}" for what in found)


@pytest.mark.parametrize(
    ("snippet", "caught"),
    [
        ("import subprocess", "imports subprocess"),
        ("import requests.adapters", "imports requests"),
        ("from urllib import request", "imports urllib.request"),
        ("import http.client", "imports http.client"),
        ("from concurrent.futures import ThreadPoolExecutor", "imports concurrent"),
        ("import structlog", "imports structlog"),
        ("from pgha_operator.shell.observe import observe", "imports pgha_operator.shell"),
        ("from pgha_operator import drill", "imports pgha_operator.drill"),
        ("from ...shell import observe", "imports pgha_operator.shell"),
        ("from os import replace", "imports os.replace"),
        ("importlib.import_module('socket')", "imports socket dynamically"),
        ("open(path, 'w')", "open() in mode 'w'"),
        ("open(path, mode='a')", "open() in mode 'a'"),
        ("open(path, 'r+')", "open() in mode 'r+'"),
        ("Path(p).open('xb')", "open() in mode 'xb'"),
        ("open(path, mode)", "not a literal"),
        ("gzip.open(path, 'wt')", "open() in mode 'wt'"),
        ("os.open(p, os.O_WRONLY | os.O_CREAT)", "os.open() for writing"),
        ("Path(p).write_text('x')", "calls .write_text()"),
        ("p.write_bytes(b'')", "calls .write_bytes()"),
        ("os.replace(a, b)", "calls os.replace()"),
        ("os.rename(a, b)", "calls os.rename()"),
        ("os.remove(a)", "calls os.remove()"),
        ("os.unlink(a)", "calls os.unlink()"),
        ("p.parent.mkdir(parents=True)", "calls .mkdir()"),
        ("os.chmod(p, 0o600)", "calls os.chmod()"),
        ("os.system('reboot')", "calls os.system()"),
    ],
)
def test_the_checker_catches(snippet: str, caught: str) -> None:
    found = violations(f"x = 1\n{snippet}\n", "pgha_operator.core.spec.loading")
    assert len(found) == 1 and found[0].startswith("line 2: ") and caught in found[0], found


@pytest.mark.parametrize(
    "snippet",
    [
        "import json, re, yaml, jinja2",
        "import http",
        "import shellish",
        "from pgha_operator.core.spec import load",
        "from . import models",
        "from pgha_operator.core import shell_words",
        "open(path)",
        "open(path, 'rb')",
        "open(path, encoding='utf-8')",
        "Path(p).open()",
        "io.open(path, 'r', encoding='utf-8')",
        "Path(p).read_text(encoding='utf-8')",
        "text.replace('a', 'b')",
        "os.path.join(a, b)",
        "os.open(p, os.O_RDONLY)",
    ],
)
def test_the_checker_lets_reading_and_pure_code_pass(snippet: str) -> None:
    assert violations(snippet + "\n", "pgha_operator.core.spec.loading") == []

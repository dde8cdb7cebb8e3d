"""Bad input and faults: a clear error naming what is wrong, never a traceback, nothing lost."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    CLI,
    cli,
    kill_leftovers,
    make_state_root,
    write_manifest,
)

pytestmark = pytest.mark.integration

SMALL = """  etcd: {members: 1}
  postgres: {instances: 1}
  loadBalancer: {instances: 1}
"""


@pytest.fixture
def root() -> Iterator[Path]:
    r = make_state_root()
    try:
        yield r
    finally:
        for state in r.glob("*state*"):
            kill_leftovers(state)
        shutil.rmtree(r, ignore_errors=True)


def test_port_taken_by_another_program_is_named(root: Path) -> None:
    manifest = write_manifest(root, "faults", "127.0.21.0/24", SMALL)
    state = root / "state"
    blocker = socket.socket()
    blocker.bind(("127.0.21.201", 5000))  # HAProxy's primary port on the derived address
    blocker.listen()
    try:
        res = cli("apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "60")
        assert res.returncode == 1
        assert "127.0.21.201:5000 is already in use" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        blocker.close()
        cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes")
    assert not state.exists()


def test_missing_binary_is_named(root: Path) -> None:
    manifest = write_manifest(root, "faults", "127.0.21.0/24", SMALL)
    res = subprocess.run(
        [*CLI, "apply", "-f", str(manifest), "--state-dir", str(root / "state")],
        capture_output=True,
        text=True,
        env={**os.environ, "PGHA_PATRONI_BIN": "/nonexistent/bin/patroni"},
        timeout=60,
    )
    assert res.returncode == 1
    assert "missing binary /nonexistent/bin/patroni" in res.stderr
    assert not (root / "state" / "machines").exists()


def test_state_dir_not_writable_is_named(root: Path) -> None:
    manifest = write_manifest(root, "faults", "127.0.21.0/24", SMALL)
    res = cli("apply", "-f", str(manifest), "--state-dir", "/proc/pgha-state", "--timeout", "5")
    assert res.returncode == 1
    assert "/proc/pgha-state" in res.stderr and "not writable" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="services run as postgres only when root")
def test_state_dir_postgres_cannot_reach_is_named(root: Path) -> None:
    manifest = write_manifest(root, "faults", "127.0.21.0/24", SMALL)
    private = root / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    state = private / "state"
    res = cli("apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "5")
    assert res.returncode == 1
    assert "user postgres (uid" in res.stderr and str(state) in res.stderr


def test_invalid_manifest_is_refused_with_file_and_field(root: Path) -> None:
    manifest = write_manifest(
        root, "faults", "127.0.21.0/24", SMALL.replace("members: 1", "members: 2")
    )
    res = cli("apply", "-f", str(manifest), "--state-dir", str(root / "state"))
    assert res.returncode == 2
    assert str(manifest) in res.stderr and "spec.etcd.members" in res.stderr
    assert not (root / "state").exists()

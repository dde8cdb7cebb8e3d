"""NspawnProvider.destroy returns only when every process of the machine is gone, by pid:
systemd-nspawn can still be tearing down (a helper it forked, same command line) for a
moment after the process the operator recorded has exited. Real processes stand in for
systemd-nspawn here (its argv[0] and --directory=); the nspawn lab destroys real machines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha_operator.core.spec import load
from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.providers.nspawn import NspawnProvider

pytestmark = pytest.mark.integration

# On SIGTERM: fork a "systemd-nspawn" helper with the same --directory that lingers 1.5 s,
# then exit at once (the recorded pid is gone; the machine is not). Its own sys.executable
# would be the real systemd-nspawn (found through argv[0]): name the interpreter.
FAKE_NSPAWN = f"PYTHON = {sys.executable!r}\n" + textwrap.dedent(
    """
    import signal, subprocess, sys, time
    def term(*_):
        subprocess.Popen(["systemd-nspawn", "-c", "import time; time.sleep(1.5)", sys.argv[1]],
                         executable=PYTHON, start_new_session=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, term)
    while True:
        time.sleep(0.05)
    """
)


def nspawn_like(root_arg: str) -> list[int]:
    """pids of live processes that look like systemd-nspawn of that root."""
    return [
        pid
        for pid, _ in procfs.live_processes()
        if (argv := procfs.read_cmdline(pid))
        and argv[0].endswith(b"systemd-nspawn")
        and root_arg.encode() in argv
    ]


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[NspawnProvider]:
    # A cluster name of its own: destroy also removes the cluster's (here absent) switch.
    name = f"t{uuid.uuid4().hex[:8]}"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        Path("manifests/nspawn.yaml").read_text().replace("name: lab", f"name: {name}")
    )
    yield NspawnProvider(load([manifest])[0].cluster, tmp_path / "state")


def test_destroy_waits_for_nspawn_helpers_by_pid(provider: NspawnProvider) -> None:
    d = provider.machines_dir / "node1"
    (d / "root").mkdir(parents=True)
    (d / "machine.json").write_text(
        json.dumps({"name": "node1", "address": "10.231.0.11", "rootfs": "/nowhere"})
    )
    root_arg = f"--directory={d / 'root'}"
    fake = subprocess.Popen(
        ["systemd-nspawn", "-c", FAKE_NSPAWN, root_arg], executable=sys.executable
    )
    try:
        assert procfs.wait_until(lambda: procfs.proc_starttime(fake.pid) is not None, 5)
        time.sleep(0.3)  # its SIGTERM handler is installed
        start = procfs.proc_starttime(fake.pid)
        (d / "nspawn.pid").write_text(json.dumps({"pid": fake.pid, "starttime": start}))
        assert provider.running("node1")
        provider.destroy("node1")
        assert nspawn_like(root_arg) == []
        assert not d.exists()
    finally:
        fake.kill()
        fake.wait()
        for pid in nspawn_like(root_arg):
            procfs.signal_exact(pid, procfs.proc_starttime(pid) or 0, 9)

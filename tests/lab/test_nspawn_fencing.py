"""Fencing a primary cut off from the network, on systemd-nspawn machines (root only).

A cluster of its own shaped like manifests/nspawn.yaml (3 PostgreSQL machines with etcd
beside them, 1 HAProxy machine) with `synchronous: on` and drills allowed:
- a cut between the operator and the primary alone (the primary's namespace drops the
  operator's address; the replicas still reach it) fences nothing: a running operator
  refuses, naming the replicas that still reach it;
- `partition-primary` (the primary's only link down): the operator fences it once both
  replicas confirm that they lost it too, long before the leader lease would; nothing
  acknowledged is lost and no two primaries ever take writes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha_operator.shell.providers import nspawn_net as net
from tests.integration.cluster_helpers import wait_for
from tests.lab.test_nspawn_lab import CLI, MANIFEST, REPO, Lab, lab_for, pytestmark  # noqa: F401

NAME = "fencelab"
NETWORK = "10.231.79."
APPLY_TIMEOUT = 600
PARTITION_GAP_LIMIT = 5.0  # seconds; the lease alone took 25 s (docs/drill.md)


def fencing_manifest(folder: Path) -> Path:
    text = MANIFEST.read_text().replace("name: lab", f"name: {NAME}")
    text = text.replace("10.231.0.", NETWORK).replace("spec:\n", "spec:\n  drills: allowed\n", 1)
    text = text.replace(
        "  postgres:\n    instances: 3\n", '  postgres:\n    instances: 3\n    synchronous: "on"\n'
    )
    path = folder / f"{NAME}.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_for(fencing_manifest(tmp_path_factory.mktemp("fencelab"))) as lab:
        lab.apply(APPLY_TIMEOUT)
        yield lab


def in_namespace(lab: Lab, machine: str, *command: str) -> None:
    ns = net.netns_path(lab.provider.net.machine_ns(machine))
    subprocess.run(["nsenter", f"--net={ns}", "--", *command], check=True, timeout=30)


def test_a_cut_between_the_operator_and_the_primary_alone_fences_nothing(lab: Lab) -> None:
    primary = wait_for("one primary", lab.primary, 60)
    operator = str(lab.provider.net.operator_address)
    # The primary drops everything to the operator: its probes fail, its replicas still
    # stream from it.
    route = ["ip", "route", "add", "blackhole", f"{operator}/32"]
    in_namespace(lab, primary, *route)
    run = subprocess.Popen(
        [*CLI, "run", "-f", str(lab.manifest), "--state-dir", str(lab.state)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(12)  # many probe rounds: 3 failed probes take 0.6 s
        assert lab.provider.running(primary)
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            out, _ = run.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            # Its loop may be waiting for the primary's SSH, which the route cuts too.
            run.kill()
            out, _ = run.communicate(timeout=20)
        subprocess.run(
            [
                "nsenter",
                f"--net={net.netns_path(lab.provider.net.machine_ns(primary))}",
                "--",
                "ip",
                "route",
                "del",
                "blackhole",
                f"{operator}/32",
            ],
            check=False,
            timeout=30,
        )
    assert "answering replicas lost it too" in out, out[-3000:]
    assert "machine powered off" not in out
    assert wait_for("the same primary", lab.primary, 60) == primary


def test_a_partitioned_primary_is_fenced_once_its_replicas_lost_it_too(lab: Lab) -> None:
    wait_for("one primary", lab.primary, 60)
    res = lab.cli(
        *("drill", "-f", str(lab.manifest), "--state-dir", str(lab.state)),
        *("--scenario", "partition-primary", "--json", "--yes"),
        timeout=900,
        check=False,
    )
    report = json.loads(res.stdout)
    run = report["runs"][0]
    assert run["verdict"] == "PASS", run["problems"]
    assert run["ackedLost"] == 0 and run["dualPrimarySeconds"] == 0
    assert run["timeline"]["seenBy"] == "probes" and run["timeline"]["keyReleased"] is not None
    assert run["writeGapSeconds"] <= PARTITION_GAP_LIMIT, run

"""The partition row of bench/failover.py: `partition-primary` on an nspawn cluster shaped
like manifests/nspawn.yaml (3 PostgreSQL machines with etcd beside them, 1 HAProxy
machine), `synchronous: on`, fencing auto, profile fast. Root only (systemd-nspawn); the
rootfs is built once and cached (/var/cache/pgha-operator/rootfs).

    .venv/bin/python bench/failover.py --partition [--runs 5]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pgha_operator.cli"]
NAME = "benchpart"
NETWORK = "10.231.78."  # its own /24: never the shipped lab's 10.231.0.0/24


def manifest(root: Path, synchronous: str) -> Path:
    text = (REPO / "manifests" / "nspawn.yaml").read_text()
    text = text.replace("name: lab", f"name: {NAME}").replace("10.231.0.", NETWORK)
    text = text.replace("spec:\n", "spec:\n  drills: allowed\n", 1)
    text = text.replace(
        "  postgres:\n    instances: 3\n",
        f'  postgres:\n    instances: 3\n    synchronous: "{synchronous}"\n',
        1,
    )
    path = root / f"{NAME}.yaml"
    path.write_text(text)
    return path


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def run_partition(runs: int, synchronous: str = "on") -> list[dict[str, Any]]:
    """`runs` partition drills on a fresh nspawn cluster, destroyed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="pgha-bench-partition-"))
    path, state = manifest(root, synchronous), root / "state"
    files = ("-f", str(path), "--state-dir", str(state))
    try:
        res = cli("apply", *files, "--timeout", "600")
        if res.returncode != 0:
            raise RuntimeError(f"apply failed:\n{res.stdout}\n{res.stderr[-3000:]}")
        results = []
        for _ in range(runs):
            started = time.monotonic()
            res = cli("drill", *files, "--scenario", "partition-primary", "--json", "--yes")
            if res.returncode not in (0, 1):
                raise RuntimeError(f"drill failed:\n{res.stdout}\n{res.stderr[-3000:]}")
            report = json.loads(res.stdout)
            run = report["runs"][0]
            run["clientTimeouts"] = report["clientTimeouts"]
            run["wallSeconds"] = round(time.monotonic() - started, 1)
            results.append(run)
            print(f"partition-primary: {run['writeGapSeconds']}", file=sys.stderr)
        return results
    finally:
        cli("destroy", *files, "--yes")
        shutil.rmtree(root, ignore_errors=True)

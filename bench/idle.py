"""The idle operator's cost: bring the demo up (`apply`), then let `run` keep it converged
for a while and read the operator's CPU time from /proc/<pid>/stat. Real processes: run it
under the integration lock, never from the unit tests.

    .venv/bin/python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pgha_operator.cli"]
DEMO = REPO / "manifests" / "demo.yaml"
TICKS = os.sysconf("SC_CLK_TCK")
PROFILE = "/tmp/pgha-idle.py-spy.txt"


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own user+system, reaped children's user+system) CPU seconds of a process."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is stat field 3; utime, stime, cutime, cstime are fields 14-17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICKS, (cutime + cstime) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cli(*args: str, timeout: float = 600) -> None:
    subprocess.run([*CLI, *args], cwd=REPO, check=True, timeout=timeout, capture_output=True)


def measure_idle(
    seconds: float = 60.0, warmup: float = 10.0, py_spy: str | None = None
) -> dict[str, Any]:
    """Share of one core the converged demo's `run` uses over `seconds` (after `warmup`).
    With `py_spy` (the path of a py-spy binary), then sample the operator as long again
    (threads holding the GIL: Python's CPU) into PROFILE as collapsed stacks."""
    root = Path(tempfile.mkdtemp(prefix="pgha-idle-", dir="/tmp"))
    root.chmod(0o755)  # postgres must reach the state dir
    state = str(root / "state")
    manifest = ["-f", str(DEMO), "--state-dir", state]
    proc: subprocess.Popen[bytes] | None = None
    try:
        _cli("apply", *manifest, "--timeout", "300")
        proc = subprocess.Popen(
            [*CLI, "run", *manifest],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(warmup)
        own0, kids0 = cpu_seconds(proc.pid)
        start = time.monotonic()
        time.sleep(seconds)
        own1, kids1 = cpu_seconds(proc.pid)
        wall = time.monotonic() - start
        if py_spy:  # after the measurement: sampling costs the operator CPU
            spy = [py_spy, "record", "--pid", str(proc.pid), "--duration", str(int(seconds))]
            spy += ["--gil", "--format", "raw", "--output", PROFILE]
            subprocess.run(spy, check=True, capture_output=True, timeout=seconds + 60)
        return {
            "seconds": round(wall, 1),
            "operator_cpu_percent": round(100 * (own1 - own0) / wall, 2),
            "children_cpu_percent": round(100 * (kids1 - kids0) / wall, 2),
            "total_cpu_percent": round(100 * (own1 - own0 + kids1 - kids0) / wall, 2),
            "rss_mib": round(rss_mib(proc.pid), 1),
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        _cli("destroy", *manifest, "--yes")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--py-spy", metavar="PATH", help="also profile with this py-spy binary")
    args = parser.parse_args()
    print(json.dumps(measure_idle(args.seconds, py_spy=args.py_spy), indent=2))


if __name__ == "__main__":
    main()

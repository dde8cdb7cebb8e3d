"""nspawn lab figures: seconds from `apply` start to the first write through the HAProxy
machine's :5000 (manifests/nspawn.yaml: 3 PostgreSQL+etcd machines, 1 HAProxy machine), with
a cold rootfs (an empty cache: debootstrap + Patroni wheels first) and with the cached one.
Also when the rootfs was ready (cold) and when every machine's nspawn had been started.
Prints JSON.

    .venv/bin/python bench/nspawn_bootstrap.py [--cached-runs 3] [--no-cold]

Root only. The cold run builds into a temporary cache under /var/cache/pgha-operator and
removes it afterwards; the cached runs use the manifest's cache (built first if absent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pgha_operator.core.spec import load  # noqa: E402
from pgha_operator.shell.providers.nspawn_rootfs import ensure_rootfs, rootfs_path  # noqa: E402
from pgha_operator.shell.state import StateDir  # noqa: E402

CLI = [sys.executable, "-m", "pgha_operator.cli"]
MANIFEST = REPO / "manifests" / "nspawn.yaml"
LIMIT = 900.0


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def manifest_with_cache(root: Path, cache: str) -> Path:
    data = yaml.safe_load(MANIFEST.read_text())
    data["spec"]["provider"]["rootfsCache"] = cache
    path = root / "nspawn.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_run(manifest: Path, cache: str) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="pgha-bench-", dir="/tmp"))
    state = root / "state"
    # Secrets made before the clock starts; the DSN names the passfile apply's first cycle writes.
    StateDir(state).load_or_create_secrets()
    dsn = cli("dsn", "-f", str(manifest), "--state-dir", str(state)).stdout.strip()
    stamp = rootfs_path(cache) / ".pgha-rootfs.json"
    n_machines = 4  # manifests/nspawn.yaml: node1-3 and haproxy1
    figures: dict[str, float] = {}
    building = not stamp.exists()  # a cold run: apply builds the rootfs first
    try:
        start = time.monotonic()
        log = open(root / "apply.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*CLI, "apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "600"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        while "first_write" not in figures:
            now = time.monotonic() - start
            if building and "rootfs_ready" not in figures and stamp.exists():
                figures["rootfs_ready"] = now
            if "all_machines_started" not in figures:
                pids = list((state / "machines").glob("*/nspawn.pid"))
                if len(pids) == n_machines:
                    figures["all_machines_started"] = now
            try:
                with psycopg.connect(dsn + " connect_timeout=2", autocommit=True) as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS b (x int)")
                    conn.execute("INSERT INTO b VALUES (1)")
                figures["first_write"] = time.monotonic() - start
            except psycopg.Error:
                if now > LIMIT or proc.poll() not in (None, 0):
                    log.close()
                    raise RuntimeError(
                        f"no write within {now:.0f} s:\n{(root / 'apply.log').read_text()[-3000:]}"
                    ) from None
                time.sleep(0.1)
        proc.wait(timeout=LIMIT)
        log.close()
        return figures
    finally:
        cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cached-runs", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-rootfs run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("nspawn_bootstrap: needs root")
    shipped_cache = load([str(MANIFEST)])[0].cluster.spec.provider.rootfs_cache  # type: ignore[union-attr]
    result: dict[str, object] = {
        "benchmark": "nspawn_bootstrap",
        "manifest": "manifests/nspawn.yaml",
    }
    work = Path(tempfile.mkdtemp(prefix="pgha-bench-", dir="/tmp"))
    try:
        if not args.no_cold:
            Path("/var/cache/pgha-operator").mkdir(parents=True, exist_ok=True)
            cold_cache = tempfile.mkdtemp(prefix="bench-cold-", dir="/var/cache/pgha-operator")
            try:
                cold = one_run(manifest_with_cache(work, cold_cache), cold_cache)
            finally:
                shutil.rmtree(cold_cache, ignore_errors=True)
            result["cold"] = {f"{k}_seconds": round(v, 2) for k, v in cold.items()}
        started = time.monotonic()
        ensure_rootfs(shipped_cache)
        result["cached_rootfs_check_seconds"] = round(time.monotonic() - started, 3)
        runs = [one_run(MANIFEST, shipped_cache) for _ in range(args.cached_runs)]
        result["cached_runs"] = [{f"{k}_seconds": round(v, 2) for k, v in r.items()} for r in runs]
        result["cached_median_first_write_seconds"] = round(
            statistics.median(r["first_write"] for r in runs), 2
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

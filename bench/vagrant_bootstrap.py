"""Vagrant lab figures: seconds from `apply` start to the first write through haproxynode's
:5000 (manifests/vagrant-lab.yaml: node1-3, etcdnode, haproxynode through Vagrant's docker
provider), with a cold box (no image yet: `docker import` of the cached rootfs first) and
with the box already imported. Also when all five containers ran. Prints JSON.

    .venv/bin/python bench/vagrant_bootstrap.py [--cached-runs 2] [--no-cold]

Root only; needs vagrant and docker.io. It starts its own Docker engine
(scripts/lab-dockerd.sh, with a run and data dir of its own) and stops and purges it at the
end. The rootfs itself is built first when absent (not timed: see bench/nspawn_bootstrap.py).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pgha_operator.core.spec import load  # noqa: E402
from pgha_operator.shell.providers import vagrant_docker as vd  # noqa: E402
from pgha_operator.shell.providers.nspawn_rootfs import ensure_rootfs  # noqa: E402
from pgha_operator.shell.state import StateDir  # noqa: E402

CLI = [sys.executable, "-m", "pgha_operator.cli"]
MANIFEST = REPO / "manifests" / "vagrant-lab.yaml"
LAB_DOCKERD = REPO / "scripts" / "lab-dockerd.sh"
LIMIT = 900.0
N_MACHINES = 5


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def running_containers(cluster: str) -> int:
    names = vd.docker("ps", "--format", "{{.Names}}", check=False).split()
    return sum(1 for n in names if n.startswith(f"pgha-{cluster}-"))


def one_run(cluster: str) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="pgha-bench-", dir="/tmp"))
    state = root / "state"
    # Secrets made before the clock starts; the DSN names the passfile apply's first cycle writes.
    StateDir(state).load_or_create_secrets()
    dsn = cli("dsn", "-f", str(MANIFEST), "--state-dir", str(state)).stdout.strip()
    figures: dict[str, float] = {}
    try:
        start = time.monotonic()
        log = open(root / "apply.log", "w")  # noqa: SIM115
        argv = [*CLI, "apply", "-f", str(MANIFEST), "--state-dir", str(state), "--timeout", "600"]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        while "first_write" not in figures:
            now = time.monotonic() - start
            if "all_machines_running" not in figures and running_containers(cluster) == N_MACHINES:
                figures["all_machines_running"] = now
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
                time.sleep(0.2)
        proc.wait(timeout=LIMIT)
        log.close()
        return figures
    finally:
        cli("destroy", "-f", str(MANIFEST), "--state-dir", str(state), "--yes")
        shutil.rmtree(root, ignore_errors=True)


def rounded(figures: dict[str, float]) -> dict[str, float]:
    return {f"{k}_seconds": round(v, 2) for k, v in figures.items()}


def measure(args: argparse.Namespace, cluster: str, cache: str) -> dict[str, object]:
    result: dict[str, object] = {}
    ensure_rootfs(cache)  # not timed
    if not args.no_cold:
        assert not vd.image_exists(vd.image_tag())  # a fresh engine: no box yet
        result["cold_box"] = rounded(one_run(cluster))
    runs = []
    for _ in range(args.cached_runs):
        started = time.monotonic()
        vd.ensure_image(cache, Path(os.devnull))  # destroy drops the unused box: import again
        result["box_import_seconds"] = round(time.monotonic() - started, 2)
        runs.append(one_run(cluster))
    if runs:
        result["cached_box_runs"] = [rounded(r) for r in runs]
        result["cached_box_median_first_write_seconds"] = round(
            statistics.median(r["first_write"] for r in runs), 2
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cached-runs", type=int, default=2)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-box run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("vagrant_bootstrap: needs root")
    cluster = load([str(MANIFEST)])[0].cluster
    cache = cluster.spec.provider.rootfs_cache  # type: ignore[union-attr]
    run_dir = tempfile.mkdtemp(prefix="pgha-bench-run-", dir="/run")
    data_dir = tempfile.mkdtemp(prefix="pgha-bench-docker-", dir="/var/tmp")
    env = {**os.environ, "PGHA_LAB_RUN": run_dir, "PGHA_LAB_DATA": data_dir}
    started = subprocess.run(
        [str(LAB_DOCKERD), "start"], capture_output=True, text=True, env=env, check=True
    )
    os.environ["DOCKER_HOST"] = started.stdout.strip().removeprefix("export DOCKER_HOST=")
    result: dict[str, object] = {
        "benchmark": "vagrant_bootstrap",
        "manifest": "manifests/vagrant-lab.yaml",
        "vm_provider": "docker",
    }
    try:
        result |= measure(args, cluster.name, cache)
    finally:
        subprocess.run([str(LAB_DOCKERD), "purge"], env=env, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The pooler against the direct path: pgbench reconnecting per transaction (-C), select-only
(-S) and the default TPC-B-like script, with 50, 200 and 1000 clients against
max_connections = 100, through HAProxy's :5000 (PostgreSQL) and :6432 (the primary's
PgBouncer). Prints TPS, latency percentiles (from pgbench's per-transaction log) and errors
as JSON. Real processes on the local provider: run it under the integration lock, never
from the tests.

    flock /work/tmp/integration.lock .venv/bin/python bench/pooler.py [--seconds 10]
        [--clients 50,200,1000] [--compare-placement]

--compare-placement also runs a PgBouncer on the load balancer's machine (its server the
primary through HAProxy's :5000, the other placement docs/pooler.md weighs) by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pgha_operator.cli"]
PGBENCH = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
NET = "127.0.48"
LB = f"{NET}.201"
MANIFEST = f"""apiVersion: pgha/v1
kind: Cluster
metadata:
  name: poolbench
spec:
  provider: {{type: local, network: {NET}.0/24}}
  profile: fast
  etcd: {{members: 1}}
  postgres:
    instances: 1
    parameters: {{max_connections: 100}}
  loadBalancer:
    machines: [{{name: haproxy, address: {LB}}}]
    maxconn: 2000
  pooler: {{enabled: true, defaultPoolSize: 20, maxClientConn: 2000}}
"""
# The other placement, started by hand: PgBouncer on the load balancer's address.
LB_POOLER_PORT = 6433


def _cli(*args: str, timeout: float = 600) -> str:
    res = subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def _env(state: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": LB,
        "PGPORT": str(port),
        "PGUSER": "app",
        "PGDATABASE": "app",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(state / "tls" / "ca.crt"),
        # The operator's passfile names its own ports; the bench's names any port.
        "PGPASSFILE": str(state.parent / "bench.pgpass"),
        "PGCONNECT_TIMEOUT": "10",
    }


def _percentiles(log_dir: Path) -> dict[str, float | None]:
    """Latency percentiles (ms) of every transaction pgbench logged (-l): its third field
    is the transaction's time in microseconds, the connection included under -C."""
    times = [
        int(line.split()[2])
        for path in log_dir.glob("pgbench_log*")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    if len(times) < 2:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    cuts = statistics.quantiles(times, n=100)
    return {f"p{p}_ms": round(cuts[p - 1] / 1000, 2) for p in (50, 95, 99)}


def pgbench_run(
    state: Path, port: int, clients: int, select_only: bool, seconds: int
) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="pgbench-log-", dir="/tmp"))
    argv = [PGBENCH, "-C", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-l"]
    argv += ["-S"] if select_only else []
    started = time.monotonic()
    res = subprocess.run(argv, env=_env(state, port), cwd=log_dir, capture_output=True,
                         text=True, timeout=seconds + 300)  # fmt: skip
    out = res.stdout + res.stderr
    tps = re.search(r"tps = ([\d.]+) \((?:without initial connection time|including)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    result = {
        "script": "select-only" if select_only else "tpcb-like",
        "clients": clients,
        "port": port,
        "tps": float(tps.group(1)) if tps else None,
        "transactions": int(m.group(1)) if (m := re.search(r"processed: (\d+)", out)) else 0,
        "aborted_clients": len(re.findall(r"client \d+ aborted", out)),
        "connection_errors": len(re.findall(r"connection to server .* failed", out)),
        "failed_transactions": int(failed.group(1)) if failed else None,
        "exit_code": res.returncode,
        "first_error": next((ln for ln in out.splitlines() if "error" in ln.lower()), None),
        "wall_s": round(time.monotonic() - started, 1),
        **_percentiles(log_dir),
    }
    shutil.rmtree(log_dir, ignore_errors=True)
    return result


def start_lb_pooler(state: Path) -> subprocess.Popen[bytes]:
    """PgBouncer on the load balancer's address, its server HAProxy's :5000 (verify-full:
    the nodes' certificates name the load balancer's address too), same auth_query."""
    node_ini = state / "machines" / "node1" / "etc" / "pgbouncer" / "pgbouncer.ini"
    text = node_ini.read_text()
    text = re.sub(r"^\* = .*$", f"* = host={LB} port=5000", text, flags=re.M)
    text = re.sub(r"^listen_addr = .*$", f"listen_addr = {LB}", text, flags=re.M)
    text = re.sub(r"^listen_port = .*$", f"listen_port = {LB_POOLER_PORT}", text, flags=re.M)
    ini = node_ini.with_name("lb-placement.ini")
    ini.write_text(text)
    shutil.chown(ini, "postgres", "postgres")
    argv = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
            "/usr/sbin/pgbouncer", str(ini)]  # fmt: skip
    log = (state / "lb-pooler.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(1.0)
    if proc.poll() is not None:
        tail = (state / "lb-pooler.log").read_text()[-2000:]
        raise RuntimeError(f"PgBouncer on the load balancer exited:\n{tail}")
    return proc


def measure(seconds: int, clients: list[int], compare_placement: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="pgha-poolbench-", dir="/tmp"))
    root.chmod(0o755)  # postgres must reach the state dir
    manifest, state = root / "poolbench.yaml", root / "state"
    manifest.write_text(MANIFEST)
    args = ["-f", str(manifest), "--state-dir", str(state)]
    lb_pooler: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = []
    try:
        _cli("apply", *args, "--timeout", "300")
        password = yaml.safe_load((state / "secrets.yaml").read_text())["app_password"]
        passfile = root / "bench.pgpass"
        passfile.write_text(f"*:*:*:app:{password}\n")
        passfile.chmod(0o600)
        init = subprocess.run([PGBENCH, "-i", "-s", "1", "-q"], env=_env(state, 5000),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i failed:\n{init.stderr}")
        ports = {"direct :5000": 5000, "pooler :6432": 6432}
        if compare_placement:
            lb_pooler = start_lb_pooler(state)
            ports[f"pooler on the load balancer :{LB_POOLER_PORT}"] = LB_POOLER_PORT
        for n in clients:
            for select_only in (True, False):
                for path, port in ports.items():
                    run = pgbench_run(state, port, n, select_only, seconds)
                    runs.append({"path": path, **run})
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        if lb_pooler is not None:
            lb_pooler.terminate()
            lb_pooler.wait(timeout=30)
        subprocess.run([*CLI, "destroy", *args, "--yes"], cwd=REPO, capture_output=True,
                       timeout=300)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    return {"seconds_per_run": seconds, "max_connections": 100, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", default="50,200,1000")
    parser.add_argument("--compare-placement", action="store_true")
    opts = parser.parse_args()
    clients = [int(c) for c in opts.clients.split(",")]
    print(json.dumps(measure(opts.seconds, clients, opts.compare_placement), indent=2))


if __name__ == "__main__":
    main()

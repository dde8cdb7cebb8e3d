"""Bootstrap figures: seconds from `apply` start to the first write through :5000 and to all
replicas streaming, median of N runs from a destroyed state. Prints JSON.

    .venv/bin/python bench/bootstrap.py [--runs 3] [--patroni-source pypi|debian]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pgha_operator.shell.state import StateDir  # noqa: E402
from tests.integration.cluster_helpers import (  # noqa: E402
    CLI,
    cli,
    kill_leftovers,
    make_state_root,
    status,
    write_manifest,
)

BODY = """  etcd: {{members: 3}}
  postgres: {{instances: 3}}
  patroni: {{source: {source}}}
  loadBalancer: {{instances: 1}}
"""


def one_run(patroni_source: str) -> dict[str, float]:
    root = make_state_root()
    manifest = write_manifest(root, "bench", "127.0.30.0/24", BODY.format(source=patroni_source))
    state = root / "state"
    # Secrets made before the clock starts; the DSN names the app role's passfile, which
    # apply's first cycle writes (until then a connection finds no password and retries).
    StateDir(state).load_or_create_secrets()
    dsn = cli("dsn", "-f", str(manifest), "--state-dir", str(state), check=True).stdout.strip()
    figures: dict[str, float] = {}
    log = Path(f"/tmp/bench-bootstrap-apply-{time.time_ns()}.log")
    try:
        start = time.monotonic()
        proc = subprocess.Popen(
            [*CLI, "apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "300"],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        while "first_write" not in figures:
            try:
                with psycopg.connect(dsn + " connect_timeout=2", autocommit=True) as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS b (x int)")
                    conn.execute("INSERT INTO b VALUES (1)")
                figures["first_write"] = time.monotonic() - start
            except psycopg.Error:
                if proc.poll():  # apply gave up: no write will ever come
                    raise RuntimeError(f"apply exited {proc.returncode}: see {log}") from None
                if time.monotonic() - start > 300:
                    raise RuntimeError("no write within 300 s") from None
                time.sleep(0.1)
        while True:
            members = status(manifest, state)["postgres"]["members"]
            if sum(m["state"] == "streaming" for m in members) == 2:
                figures["all_replicas_streaming"] = time.monotonic() - start
                break
            if time.monotonic() - start > 300:
                raise RuntimeError("replicas not streaming within 300 s")
            time.sleep(0.2)
        proc.wait(timeout=300)
        return figures
    finally:
        cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes")
        kill_leftovers(state)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--patroni-source",
        choices=("pypi", "debian"),
        default="pypi",
        help="spec.patroni.source of the cluster (debian: Debian's Patroni 3.0.2)",
    )
    args = parser.parse_args()
    runs = [one_run(args.patroni_source) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "benchmark": "bootstrap",
                "patroniSource": args.patroni_source,
                "runs": runs,
                "median_first_write_seconds": statistics.median(r["first_write"] for r in runs),
                "median_all_replicas_streaming_seconds": statistics.median(
                    r["all_replicas_streaming"] for r in runs
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Day-2 figures: seconds to converge and the longest write gap through :5000 for +1
PostgreSQL node, +2 etcd members, a rolling restart of 3 nodes and a switchover. JSON.

    .venv/bin/python bench/day2.py
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.cluster_helpers import (  # noqa: E402
    Writer,
    cli,
    dsn,
    kill_leftovers,
    make_state_root,
    status,
    write_manifest,
)

NET = "127.0.31.0/24"


def body(pg: int, etcd: int, max_connections: int) -> str:
    return f"""  etcd: {{members: {etcd}}}
  postgres: {{instances: {pg}, parameters: {{max_connections: {max_connections}}}}}
  loadBalancer: {{instances: 1}}
"""


def main() -> None:
    root = make_state_root()
    manifest = write_manifest(root, "benchday2", NET, body(3, 3, 100))
    state = root / "state"
    args = ["-f", str(manifest), "--state-dir", str(state)]
    results: dict[str, dict[str, float]] = {}
    try:
        res = cli("apply", *args, "--timeout", "240")
        assert res.returncode == 0, res.stderr
        with Writer(dsn(manifest, state)) as writer:

            def change(name: str, *command: str) -> None:
                start = time.monotonic()
                res = cli(*command, *args)
                assert res.returncode == 0, res.stderr
                results[name] = {
                    "seconds": round(time.monotonic() - start, 2),
                    "writeGapSeconds": round(writer.longest_gap(start), 3),
                }

            write_manifest(root, "benchday2", NET, body(3, 3, 150))
            change("rollingRestart3Nodes", "apply", "--timeout", "300")
            write_manifest(root, "benchday2", NET, body(4, 3, 150))
            change("addPostgresNode", "apply", "--timeout", "240")
            write_manifest(root, "benchday2", NET, body(4, 5, 150))
            change("addTwoEtcdMembers", "apply", "--timeout", "240")
            primary = next(
                m["name"] for m in status(manifest, state)["postgres"]["members"]
                if m["role"] == "replica"
            )  # fmt: skip
            change("switchover", "switchover", "--to", primary)
            lost = writer.lost()
        print(
            json.dumps({"benchmark": "day2", "results": results, "ackedLost": len(lost)}, indent=2)
        )
    finally:
        cli("destroy", *args, "--yes")
        kill_leftovers(state)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

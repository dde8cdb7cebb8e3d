"""HAProxy facts: pure parser of the stats CSV, (fetched by shell/clients/haproxy.py).

HAProxy 2.6's CSV (fixtures tests/unit/fixtures/haproxy_stats*.csv) starts with a header
line "# pxname,svname,...", has a trailing comma on every line, and one row per
frontend ("FRONTEND"), backend ("BACKEND") and server. A `listen` section gives both a
FRONTEND and a BACKEND row under its own name.
"""

from __future__ import annotations

import csv
import io

from pgha_operator.core.facts.types import HaproxyServer

_AGGREGATE_ROWS = frozenset({"FRONTEND", "BACKEND"})


def parse_stats_csv(text: str) -> tuple[HaproxyServer, ...]:
    """Stats CSV -> one HaproxyServer per server row (FRONTEND/BACKEND rows skipped)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("not an HAProxy stats CSV: missing the '# pxname,svname,...' header")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    missing = {"pxname", "svname", "status"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"HAProxy stats CSV lacks columns: {', '.join(sorted(missing))}")
    return tuple(
        HaproxyServer(backend=row["pxname"], server=row["svname"], status=row["status"])
        for row in reader
        if row["pxname"] and row["svname"] not in _AGGREGATE_ROWS
    )


def csv_url(stats_url: str) -> str:
    """The stats page URL -> its CSV export ("http://h:7000/" -> "http://h:7000/;csv")."""
    if stats_url.endswith(";csv"):
        return stats_url
    if "/" not in stats_url.partition("://")[2]:
        stats_url += "/"  # "http://h:7000" has no path yet
    return stats_url + ";csv"

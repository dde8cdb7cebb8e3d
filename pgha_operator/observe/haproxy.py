"""HAProxy facts: pure parser of the stats CSV, and the collector that fetches it.

HAProxy 2.6's CSV (fixtures tests/unit/fixtures/haproxy_stats*.csv) starts with a header
line "# pxname,svname,...", has a trailing comma on every line, and one row per
frontend ("FRONTEND"), backend ("BACKEND") and server. A `listen` section gives both a
FRONTEND and a BACKEND row under its own name.
"""

from __future__ import annotations

import csv
import io

import requests

from pgha_operator.observe.facts import HaproxyFacts, HaproxyServer

TIMEOUT = 1.5
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


def collect_haproxy(stats_url: str, timeout: float = TIMEOUT) -> HaproxyFacts:
    """Fetch and parse the stats CSV. Never raises: failures are reachable=False + error."""
    url = csv_url(stats_url)
    try:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
        return HaproxyFacts(reachable=True, servers=parse_stats_csv(resp.text))
    except requests.ConnectionError as exc:
        reason = "connection refused" if "refused" in str(exc) else str(exc)
        return HaproxyFacts(reachable=False, error=f"{url}: {reason}")
    except requests.Timeout:
        return HaproxyFacts(reachable=False, error=f"{url}: timed out")
    except (requests.RequestException, ValueError) as exc:
        return HaproxyFacts(reachable=False, error=f"{url}: {exc}")

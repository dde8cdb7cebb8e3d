"""HAProxy client: the stats CSV, fetched and parsed into facts."""

from __future__ import annotations

import requests

from pgha_operator.core.facts.haproxy import csv_url, parse_stats_csv
from pgha_operator.core.facts.types import HaproxyFacts

TIMEOUT = 1.5


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

"""HAProxy client: the stats CSV, fetched and parsed into facts.

The stats page asks for basic auth (user `pgha-stats`, the cluster's generated
`stats_password`): without it HAProxy answers 401.
"""

from __future__ import annotations

import requests

from pgha_operator.core.facts.haproxy import csv_url, parse_stats_csv
from pgha_operator.core.facts.types import HaproxyFacts, HaproxyServer
from pgha_operator.shell.clients import transport
from pgha_operator.shell.clients.errors import ComponentError

TIMEOUT = 1.5


class HaproxyClient:
    def __init__(
        self, stats_url: str, auth: tuple[str, str] | None = None, timeout: float = TIMEOUT
    ) -> None:
        self.url = csv_url(stats_url)
        self.auth = auth
        self.timeout = timeout

    def stats(self) -> tuple[HaproxyServer, ...]:
        """Every backend server's row of the stats CSV. Raises ComponentError."""
        try:
            resp = transport.get(self.url, auth=self.auth, timeout=self.timeout)
            resp.raise_for_status()
            return parse_stats_csv(resp.text)
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc) else str(exc)
            raise ComponentError(f"{self.url}: {reason}", url=self.url) from exc
        except requests.Timeout as exc:
            raise ComponentError(f"{self.url}: timed out", url=self.url) from exc
        except (requests.RequestException, ValueError) as exc:
            raise ComponentError(f"{self.url}: {exc}", url=self.url) from exc


def collect_haproxy(
    stats_url: str, auth: tuple[str, str] | None = None, timeout: float = TIMEOUT
) -> HaproxyFacts:
    """Fetch and parse the stats CSV. Never raises: failures are reachable=False + error."""
    try:
        return HaproxyFacts(reachable=True, servers=HaproxyClient(stats_url, auth, timeout).stats())
    except ComponentError as exc:
        return HaproxyFacts(reachable=False, error=str(exc))

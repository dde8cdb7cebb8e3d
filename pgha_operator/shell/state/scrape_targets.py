"""scrape-targets.json in the state dir: a Prometheus file_sd list of the cluster's own
exporters, for a Prometheus `file_sd_configs` entry to point at.

Listed: Patroni's GET /metrics on every PostgreSQL node, etcd's /metrics on every etcd member
(each with the scheme its URL has, `__scheme__`), and HAProxy's built-in Prometheus exporter
on every load balancer (`/metrics` on the stats port, plain HTTP behind the stats page's basic
auth: file_sd cannot carry credentials, so the scrape job for `job="haproxy"` sets
`basic_auth`; docs/metrics.md shows one). The operator's own /metrics is where `run --listen`
says.

Written only when its content changes, atomically: Prometheus re-reads the file on change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pgha_operator.core.render.haproxy import METRICS_PATH
from pgha_operator.core.topology import Topology
from pgha_operator.shell.state.atomic import write_atomic

FILE_NAME = "scrape-targets.json"


def target_groups(topo: Topology, stats_port: int) -> list[dict[str, Any]]:
    """One file_sd group per exporter: its host:port, and labels naming cluster, job, member."""
    urls = [("patroni", node, topo.rest_api_url(node)) for node in topo.postgres]
    urls += list(zip(("etcd",) * len(topo.etcd), topo.etcd, topo.etcd_client_urls, strict=True))
    urls += [
        ("haproxy", lb, f"http://{topo.address(lb)}:{stats_port}") for lb in topo.loadbalancers
    ]
    groups = []
    for job, member, url in urls:
        parts = urlsplit(url)
        labels = {
            "job": job,
            "cluster": topo.cluster,
            "member": member,
            "__scheme__": parts.scheme,
            "__metrics_path__": METRICS_PATH,
        }
        groups.append({"targets": [parts.netloc], "labels": labels})
    return groups


class ScrapeTargets:
    """The file, and what was last written to it (a converged cycle writes nothing)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._written: Topology | None = None  # the controller keeps one per manifest

    def write(self, topo: Topology, stats_port: int) -> bool:
        """Write the list for `topo` if it differs from the file; True when written."""
        if topo is self._written:
            return False
        text = json.dumps(target_groups(topo, stats_port), indent=2) + "\n"
        try:
            same = self.path.read_text() == text
        except OSError:
            same = False
        if not same:
            write_atomic(self.path, text.encode(), mode=0o644)
        self._written = topo
        return not same

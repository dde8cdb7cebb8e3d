"""GET /metrics on the status server, as `run --listen` wires it (cli/operate.py)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from pgha_operator.shell.metrics import OperatorMetrics, metrics_response
from pgha_operator.shell.status_http import StatusServer


def test_metrics_are_served_before_the_first_cycle_and_parse() -> None:
    metrics = OperatorMetrics()
    metrics.cluster("demo").record_fencing("refused")
    server = StatusServer(
        ("127.0.0.1", 0), lambda: None, routes={"/metrics": lambda: metrics_response(metrics)}
    )
    server.start()
    try:
        resp = requests.get(f"{server.url}/metrics", timeout=5)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(resp.text)}
        (sample,) = [
            s
            for s in families["pgha_fencing_decisions"].samples
            if s.name.endswith("_total") and s.labels["decision"] == "refused"
        ]
        assert sample.labels["cluster"] == "demo" and sample.value == 1
        assert families["pgha_operator_role"].type == "gauge"
        # the other endpoints still answer as before (no cycle yet)
        assert requests.get(f"{server.url}/status", timeout=5).status_code == 503
        assert requests.get(f"{server.url}/metrics?x=1", timeout=5).status_code == 200
    finally:
        server.stop()

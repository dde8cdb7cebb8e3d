"""A decision stays one short line: component error pages and long text are cut
(core/brief.py), and a Patroni that has no cluster configuration yet is bootstrapping,
not broken (core/conditions.py)."""

from __future__ import annotations

from dataclasses import replace

from pgha_operator.core.actions import Action, StartService
from pgha_operator.core.brief import DECISION_CHARS, brief
from pgha_operator.core.conditions import assess, phase
from pgha_operator.core.desired import Plan
from pgha_operator.core.facts.types import PatroniFacts
from pgha_operator.shell.cycle import verdict
from pgha_operator.shell.execute import Outcome
from tests.unit.test_conditions import routed
from tests.unit.test_plan import converged, demo_desired

# What Python's http.server (Patroni's REST API) sends with a 502, as our client quotes it.
PAGE = """<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: 502</p>
        <p>Message: Bad Gateway.</p>
    </body>
</html>"""
SEEN = f"GET /config failed: http://127.0.10.11:8008: HTTP 502 {PAGE}"
NOTHING = Plan((), "waiting")


def test_an_html_error_page_is_dropped() -> None:
    assert brief(SEEN) == "GET /config failed: http://127.0.10.11:8008: HTTP 502"


def test_a_page_cut_by_the_client_does_not_swallow_the_next_error() -> None:
    cut = PAGE[:150]
    text = f"a:8008: HTTP 502 {cut}; b:8008: connection refused"
    assert brief(text) == "a:8008: HTTP 502; b:8008: connection refused"


def test_long_text_is_capped_on_one_line() -> None:
    text = "line one\n" + "x" * 500
    short = brief(text)
    assert len(short) == DECISION_CHARS and "\n" not in short and short.endswith("...")
    assert brief("primary backend UP ['node1'] (a < b)") == "primary backend UP ['node1'] (a < b)"


def bootstrapping(state: str) -> tuple:
    """No primary yet: every member `state`, HAProxy routes to none of them."""
    desired = demo_desired()
    observed = converged(desired)
    members = tuple(replace(m, role="replica", state=state) for m in observed.patroni.members)
    patroni = PatroniFacts(reachable=False, members=members, error=SEEN, no_dcs_config=True)
    return desired, routed(desired, replace(observed, patroni=patroni))


def test_patroni_without_cluster_configuration_is_progressing_in_one_short_line() -> None:
    desired, observed = bootstrapping("starting")
    conditions = assess(desired, observed)
    patroni = next(c for c in conditions if c.type == "PatroniConverged")
    assert not patroni.status and patroni.transient
    assert patroni.reason.startswith("bootstrapping: no cluster configuration yet")
    assert phase(conditions, NOTHING) == "Progressing"
    result = verdict(desired, observed, NOTHING)
    assert result.phase == "Progressing"
    assert result.decision.startswith("waiting: PatroniConverged bootstrapping")
    assert "<" not in result.decision and len(result.decision) <= DECISION_CHARS


def test_a_stuck_member_during_bootstrap_is_still_degraded() -> None:
    desired, observed = bootstrapping("start failed")
    conditions = assess(desired, observed)
    patroni = next(c for c in conditions if c.type == "PatroniConverged")
    assert not patroni.transient and "bootstrap stuck" in patroni.reason
    assert phase(conditions, NOTHING) == "Degraded"


def test_an_unreachable_patroni_reason_carries_no_html() -> None:
    desired = demo_desired()
    observed = routed(desired, converged(desired))
    observed = replace(observed, patroni=PatroniFacts(reachable=False, error=SEEN))
    patroni = next(c for c in assess(desired, observed) if c.type == "PatroniConverged")
    assert patroni.reason == "unreachable: GET /config failed: http://127.0.10.11:8008: HTTP 502"
    assert not patroni.transient  # /config failed for another reason than "not yet written"


def test_a_failed_action_names_itself_in_the_verdict() -> None:
    desired = demo_desired()
    observed = routed(desired, converged(desired))
    first, second = _two_actions()
    outcome = Outcome(done=[first], error=f"{second.describe}: HTTP 502 {PAGE}")
    result = verdict(desired, observed, Plan((first, second), "two steps"), outcome)
    assert result.done == (first,) and result.failed == second
    assert result.decision == f"failed: {second.describe}: HTTP 502"


def _two_actions() -> tuple[Action, Action]:
    return StartService("haproxy", "haproxy"), StartService("etcd1", "etcd")


def test_patroni_answering_502_on_config_is_read_as_no_configuration_yet() -> None:
    """A stand-in for Patroni's REST API before bootstrap: /config answers http.server's
    502 page, as Patroni 4.1 does while the cluster has no configuration in etcd."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pgha_operator.shell.clients.patroni import collect_patroni

    class Starting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/config":
                self.send_error(502)
                return
            body = json.dumps({"members": []}).encode()
            self.send_response(503 if self.path == "/primary" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Starting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        facts = collect_patroni([f"http://127.0.0.1:{server.server_address[1]}"])
    finally:
        server.shutdown()
        server.server_close()
    assert not facts.reachable and facts.no_dcs_config
    assert "HTTP 502" in (facts.error or "")
    assert "<" not in brief(facts.error or "")

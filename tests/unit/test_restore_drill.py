"""The restore drill: its row-by-row judgement (RPO), its figures' spread, and the clone's
manifest (valid, its own name and addresses, restoring the source's stanza)."""

from __future__ import annotations

from pgha_operator.core.spec import parse_text
from pgha_operator.drill.pgclient import Outcome
from pgha_operator.drill.restore_check import RestoreRun, judge, spread
from pgha_operator.drill.restore_cli import report, run_line
from pgha_operator.drill.restore_drill import clone_manifest, clone_network
from pgha_operator.drill.writer import Attempt

SOURCE = """apiVersion: pgha/v1
kind: Cluster
metadata: {name: demo}
spec:
  provider: {type: local, network: 127.0.10.0/24}
  drills: allowed
  postgres: {parameters: {max_connections: 200}}
  backup: {repository: {path: /srv/backups/demo}}
"""


def attempt(client: int, seq: int, started: float, finished: float, ok: bool = True) -> Attempt:
    return Attempt(client, seq, started, finished, Outcome.OK if ok else Outcome.UNKNOWN)


ATTEMPTS = [
    attempt(1, 1, 1.0, 1.1),  # acknowledged before T=5: must be there
    attempt(1, 2, 4.8, 4.9),  # idem
    attempt(2, 1, 4.95, 5.05),  # in flight across T: either
    attempt(2, 2, 3.0, 3.1, ok=False),  # not acknowledged: either
    attempt(1, 3, 5.2, 5.3),  # sent after T: must not be there
]


def test_every_row_acknowledged_before_t_is_there_none_sent_after() -> None:
    judged = judge(ATTEMPTS, 5.0, {(1, 1), (1, 2), (2, 1)})
    assert judged.before == ((1, 1), (1, 2)) and judged.after == ((1, 3),)
    assert (judged.missing, judged.extra, judged.rpo_seconds) == ((), (), 0.0)
    without_in_flight = judge(ATTEMPTS, 5.0, {(1, 1), (1, 2), (2, 2)})
    assert without_in_flight.missing == () and without_in_flight.extra == ()


def test_lost_and_extra_rows_fail_with_the_rpo_of_the_earliest_lost() -> None:
    judged = judge(ATTEMPTS, 5.0, {(1, 2), (1, 3)})
    assert judged.missing == ((1, 1),) and judged.extra == ((1, 3),)
    assert round(judged.rpo_seconds, 2) == 3.9
    run = RestoreRun(1, "T", "L", 2, 1, judged.missing, judged.extra, judged.rpo_seconds, 12.0, 2)
    assert run.verdict == "FAIL" and "missing 1, extra 1" in run_line(run)
    passed = RestoreRun(2, "T", "L", 2, 1, (), (), 0.0, 10.0, 2)
    body = report([passed, passed])
    assert body["verdict"] == "PASS" and body["rtoSeconds"] == {
        "median": 10.0,
        "min": 10.0,
        "max": 10.0,
    }
    assert report([passed, run])["verdict"] == "FAIL"


def test_spread() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0}
    assert spread([]) is None


def test_the_clone_manifest_is_valid_and_restores_the_sources_stanza() -> None:
    [source], problems = parse_text(SOURCE, "demo.yaml")
    assert problems == []
    network = clone_network(source.cluster, None)
    assert network == "127.0.11.0/24"
    text = clone_manifest(source.cluster, "demo-rd", network, "2026-11-28 14:00:00+00:00")
    [clone], problems = parse_text(text, "clone.yaml")
    assert problems == [], problems
    recovery = clone.cluster.spec.bootstrap.recovery
    assert recovery is not None and recovery.source == "/srv/backups/demo"
    assert recovery.stanza == "demo" and recovery.target_time is not None
    assert clone.cluster.spec.backup is not None and clone.cluster.spec.postgres.instances == 1
    assert clone.cluster.spec.postgres.parameters == {"max_connections": 200}

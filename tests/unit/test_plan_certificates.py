"""plan(): a renewed certificate reaches each daemon without downtime (pure)."""

from __future__ import annotations

from dataclasses import replace

from pgha_operator.core.actions import ReloadService, RestartService, WriteFile
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.render.context import DesiredFile
from tests.unit.test_plan import converged, demo_desired


def with_changed(desired: Desired, pick: str, service: str) -> tuple[Observed, list[DesiredFile]]:
    """A converged cluster but for every `service` certificate file ending in `pick`."""
    files = [
        f for f in desired.files if f.certificate and f.service == service and f.path.endswith(pick)
    ]
    observed = converged(desired)
    changed = {**observed.files, **{(f.machine, f.path): "old" for f in files}}
    return replace(observed, files=changed), files


def test_etcd_reads_a_renewed_pair_on_its_next_handshake() -> None:
    """etcd 3.4 loads its certificate and key per TLS handshake: written, no restart."""
    desired = demo_desired()
    observed, files = with_changed(desired, "/server.crt", "etcd")
    _, keys = with_changed(desired, "/server.key", "etcd")
    observed = replace(
        observed, files={**observed.files, **{(f.machine, f.path): "old" for f in keys}}
    )
    actions = plan(desired, observed).actions
    assert len(files) == len(keys) == 3
    assert not any(isinstance(a, RestartService | ReloadService) for a in actions)
    assert {(a.machine, a.path, a.content) for a in actions if isinstance(a, WriteFile)} == {
        (f.machine, f.path, f.content)
        for f in files + keys  # as rendered: no pending mark
    }


def test_etcd_restarts_one_member_for_a_new_ca() -> None:
    """Its CA pool is read once at start."""
    desired = demo_desired()
    observed, files = with_changed(desired, "/ca.crt", "etcd")
    actions = plan(desired, observed).actions
    restarts = [a for a in actions if isinstance(a, RestartService)]
    assert len(files) == 3 and len(restarts) == 1
    assert restarts[0].service == "etcd"


def test_patroni_reloads_for_a_renewed_pair() -> None:
    """Patroni on SIGHUP reloads PostgreSQL (pg_ctl reload re-reads ssl files) and its REST
    API's certificate: no restart."""
    desired = demo_desired()
    observed, files = with_changed(desired, "/server.crt", "patroni")
    actions = plan(desired, observed).actions
    reloads = [a for a in actions if isinstance(a, ReloadService)]
    assert not any(isinstance(a, RestartService) for a in actions)
    assert sorted((r.machine, r.service) for r in reloads) == sorted(
        (f.machine, "patroni") for f in files
    )
    assert all(
        [w.path for w in r.then_write] == [f.path for f in files if f.machine == r.machine]
        for r in reloads
    )


def test_haproxy_reloads_for_its_ca() -> None:
    desired = demo_desired()
    observed, files = with_changed(desired, "/ca.crt", "haproxy")
    actions = plan(desired, observed).actions
    assert [(a.machine, a.service) for a in actions if isinstance(a, ReloadService)] == [
        (f.machine, "haproxy") for f in files
    ]

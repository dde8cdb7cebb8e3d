"""plan(): tables of observations -> actions, and properties (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pgha_operator.core import topology
from pgha_operator.core.actions import (
    CreateMachine,
    ReloadService,
    RestartService,
    StartService,
    WaitFor,
    WriteFile,
)
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.facts.backup import ArchiverFacts, BackupFacts
from pgha_operator.core.facts.observed import MachineFact, Observed
from pgha_operator.core.facts.types import (
    EtcdFacts,
    EtcdMember,
    HaproxyFacts,
    PatroniFacts,
    PatroniMember,
)
from pgha_operator.core.plan import Desired, content_hash, plan
from pgha_operator.core.render import Binaries
from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import load

DEMO = load(["manifests/demo.yaml"])[0].cluster


def demo_desired() -> Desired:
    topo = topology.build(DEMO)
    layouts = {m.name: topology.layout(f"/srv/pgha/demo/machines/{m.name}") for m in topo.machines}
    desired, _ = build_desired(DEMO, layouts, PLACEHOLDER_SECRETS, Binaries(), "postgres", "local")
    return desired


def converged(desired: Desired) -> Observed:
    """What a healthy cluster that matches `desired` looks like."""
    topo = desired.topology
    members = tuple(
        EtcdMember(
            id=str(i),
            name=n,
            peer_urls=(topo.etcd_peer_url(n),),
            client_urls=(f"http://{topo.address(n)}:2379",),
            is_learner=False,
        )
        for i, n in enumerate(topo.etcd)
    )
    pg = tuple(
        PatroniMember(
            name=n,
            host=topo.address(n),
            port=5432,
            api_url=topo.rest_api_url(n) + "/patroni",
            role="primary" if i == 0 else "replica",
            state="running" if i == 0 else "streaming",
            timeline=1,
            lag_bytes=0,
            pending_restart=False,
        )
        for i, n in enumerate(topo.postgres)
    )
    return Observed(
        machines={m.name: MachineFact(m.name, True, m.address) for m in topo.machines},
        files={(f.machine, f.path): content_hash(f.content) for f in desired.files},
        services={
            (m, s): ServiceState.RUNNING for m, names in desired.services.items() for s in names
        },
        etcd=EtcdFacts(reachable=True, members=members, healthy=frozenset(topo.etcd)),
        patroni=PatroniFacts(reachable=True, members=pg, primaries=frozenset({topo.postgres[0]})),
        haproxy={lb: HaproxyFacts(reachable=True) for lb in topo.loadbalancers},
        backup=healthy_backups(desired),
    )


CONVERGED_SYSTEM_ID = 7_000_000_000_000_000_001


def healthy_backups(desired: Desired) -> BackupFacts | None:
    """With spec.backup, a healthy cluster's stanza is its own database's and its primary's
    last archive attempt succeeded (no backup facts without spec.backup: none are read)."""
    if desired.cluster.spec.backup is None:
        return None
    archiver = ArchiverFacts(
        archived_count=1,
        last_archived_wal="000000010000000000000001",
        last_archived_time=None,
        failed_count=0,
        last_failed_wal=None,
        last_failed_time=None,
    )
    return BackupFacts(True, CONVERGED_SYSTEM_ID, archiver, CONVERGED_SYSTEM_ID)


def test_empty_observation_plans_full_bootstrap_in_dependency_order() -> None:
    desired = demo_desired()
    actions = plan(desired, Observed()).actions
    kinds = [type(a) for a in actions]
    n_machines = len(desired.topology.machines)
    assert kinds[:n_machines] == [CreateMachine] * n_machines
    writes = [a for a in actions if isinstance(a, WriteFile)]
    assert {(w.machine, w.path) for w in writes} == {(f.machine, f.path) for f in desired.files}
    assert kinds.index(WriteFile) > max(i for i, k in enumerate(kinds) if k is CreateMachine)
    starts = [a for a in actions if isinstance(a, StartService)]
    # etcd first; Patroni waits for an etcd quorum; HAProxy does not depend on Patroni.
    assert [s.service for s in starts] == ["etcd", "etcd", "etcd", "haproxy"]
    assert isinstance(actions[-1], WaitFor)
    assert min(actions.index(s) for s in starts) > max(actions.index(w) for w in writes)


def test_with_etcd_quorum_patroni_starts_before_haproxy() -> None:
    desired = demo_desired()
    observed = converged(desired)
    services = {k: ServiceState.STOPPED for k in observed.services if k[1] != "etcd"}
    observed = replace(observed, services={**observed.services, **services})
    starts = [(a.service, a.machine) for a in plan(desired, observed).actions]
    assert starts == [
        ("patroni", "node1"),
        ("patroni", "node2"),
        ("patroni", "node3"),
        ("haproxy", "haproxy"),
    ]


def test_converged_plans_nothing() -> None:
    desired = demo_desired()
    result = plan(desired, converged(desired))
    assert result.actions == ()
    assert result.decision == "converged"


def test_two_primaries_blocks_everything() -> None:
    desired = demo_desired()
    observed = converged(desired)
    observed = replace(
        observed,
        patroni=replace(observed.patroni, primaries=frozenset({"node1", "node2"})),
        services={**observed.services, ("haproxy", "haproxy"): ServiceState.FAILED},
    )
    result = plan(desired, observed)
    assert result.actions == ()
    assert result.blocked == "TwoPrimaries"
    assert "node1, node2" in result.decision


def test_hand_edited_haproxy_cfg_is_restored_and_reloaded() -> None:
    desired = demo_desired()
    observed = converged(desired)
    cfg = next(f for f in desired.files if f.service == "haproxy" and not f.certificate)
    observed = replace(observed, files={**observed.files, (cfg.machine, cfg.path): "edited"})
    actions = plan(desired, observed).actions
    # Written with a trailing blank line until reloaded, so a lost reload is seen again;
    # the reload writes it as rendered.
    pending = cfg.content + "\n"
    rendered = WriteFile(cfg.machine, cfg.path, cfg.content, cfg.mode, cfg.owner, "changed")
    assert actions == (
        WriteFile(cfg.machine, cfg.path, pending, cfg.mode, cfg.owner, "changed, reload pending"),
        ReloadService(cfg.machine, "haproxy", f"{cfg.path} changed", then_write=(rendered,)),
    )


def test_etcd_config_change_restarts_one_member_per_cycle() -> None:
    desired = demo_desired()
    observed = converged(desired)
    etcd_files = [f for f in desired.files if f.service == "etcd" and not f.certificate]
    files = dict(observed.files)
    for f in etcd_files:
        files[(f.machine, f.path)] = "old"
    actions = plan(desired, replace(observed, files=files)).actions
    # The file is written only together with its reader's restart, one member per cycle:
    # with a pending mark first, as rendered by the restart once it is done.
    writes = [a for a in actions if isinstance(a, WriteFile)]
    restarts = [a for a in actions if isinstance(a, RestartService)]
    assert len(etcd_files) == 3 and len(writes) == 1 and len(restarts) == 1
    assert (writes[0].machine, restarts[0].machine) == ("etcd1", "etcd1")
    assert writes[0].content == etcd_files[0].content + "\n"
    assert [w.content for w in restarts[0].then_write] == [etcd_files[0].content]
    assert restarts[0].barrier


def test_dead_services_are_started() -> None:
    desired = demo_desired()
    observed = converged(desired)
    observed = replace(
        observed,
        services={
            **observed.services,
            ("node2", "patroni"): ServiceState.FAILED,
            ("etcd3", "etcd"): ServiceState.STOPPED,
        },
    )
    starts = [(a.machine, a.service) for a in plan(desired, observed).actions]
    assert starts == [("etcd3", "etcd"), ("node2", "patroni")]


def test_patroni_waits_without_etcd_quorum() -> None:
    desired = demo_desired()
    observed = converged(desired)
    etcd = replace(observed.etcd, healthy=frozenset({"etcd1"}))
    services = {**observed.services, ("node1", "patroni"): ServiceState.STOPPED}
    actions = plan(desired, replace(observed, etcd=etcd, services=services)).actions
    assert not any(isinstance(a, StartService) and a.service == "patroni" for a in actions)
    assert isinstance(actions[-1], WaitFor)


DESIRED = demo_desired()
CONVERGED = converged(DESIRED)
FILE_KEYS = sorted(CONVERGED.files)
SERVICE_KEYS = sorted(CONVERGED.services)


@settings(max_examples=60, deadline=None)
@given(
    drifted_files=st.sets(st.sampled_from(FILE_KEYS)),
    dead=st.dictionaries(
        st.sampled_from(SERVICE_KEYS), st.sampled_from([ServiceState.STOPPED, ServiceState.FAILED])
    ),
    missing_machines=st.sets(st.sampled_from(sorted(CONVERGED.machines))),
)
def test_plan_is_deterministic_and_repairs_exactly_the_drift(
    drifted_files: set[tuple[str, str]],
    dead: dict[tuple[str, str], ServiceState],
    missing_machines: set[str],
) -> None:
    observed = replace(
        CONVERGED,
        files={k: ("drift" if k in drifted_files else v) for k, v in CONVERGED.files.items()},
        services={**CONVERGED.services, **dead},
        machines={k: v for k, v in CONVERGED.machines.items() if k not in missing_machines},
    )
    first = plan(DESIRED, observed)
    assert first == plan(DESIRED, observed)
    written = {(a.machine, a.path) for a in first.actions if isinstance(a, WriteFile)}
    assert written <= drifted_files
    by_key = {(f.machine, f.path): f for f in DESIRED.files}
    # A reader restarts for a changed definition, or a changed etcd config.
    restarting = {
        (f.machine, f.defines or f.service)
        for f in DESIRED.files
        if (f.machine, f.path) in drifted_files
        and (
            f.defines or (f.service == "etcd" and not f.path.endswith(("server.crt", "server.key")))
        )
    }
    for key in drifted_files - written:
        # Held back only when its running reader must restart, which happens one per cycle.
        f = by_key[key]
        reader = f.defines or f.service
        running = observed.service(f.machine, reader) == ServiceState.RUNNING
        assert running and (f.machine, reader) in restarting
    assert sum(isinstance(a, RestartService) for a in first.actions) <= 1
    created = {a.machine for a in first.actions if isinstance(a, CreateMachine)}
    assert created == missing_machines
    started = {(a.machine, a.service) for a in first.actions if isinstance(a, StartService)}
    assert started == set(dead)
    # Applying the plan's effects and observing again plans nothing.
    assert plan(DESIRED, CONVERGED).actions == ()


def test_missing_roles_and_app_database_are_created_once_a_primary_answers() -> None:
    desired = demo_desired()
    observed = replace(converged(desired), roles=frozenset(), databases=frozenset())
    # The app's role and database first: a new cluster's first write waits on them.
    assert [a.describe for a in plan(desired, observed).actions] == [
        "create role app on the primary",
        "create database app (owner app) on the primary",
        "create role admin on the primary",
    ]
    made = replace(observed, roles=frozenset({"admin", "app"}), databases=frozenset({"app"}))
    assert plan(desired, made).actions == ()
    # No answer about databases (None): nothing is assumed missing.
    assert plan(desired, replace(made, databases=None)).actions == ()


def test_changed_patroni_definitions_restart_replicas_before_the_primary() -> None:
    desired = demo_desired()
    observed = converged(desired)
    defs = [f for f in desired.files if f.defines == "patroni"]
    files = {**observed.files, **{(f.machine, f.path): "old" for f in defs}}
    actions = plan(desired, replace(observed, files=files)).actions
    restarts = [a for a in actions if isinstance(a, RestartService)]
    # node1 is the primary in `converged`: a replica goes first, one per cycle.
    assert [(r.machine, r.service) for r in restarts] == [("node2", "patroni")]

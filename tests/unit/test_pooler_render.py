"""spec.pooler rendered (pure): off by default (nothing of it in any shipped manifest's files);
on, every PostgreSQL node gets pgbouncer.ini, an auth file holding only the pooler's role,
its certificates and its service, and HAProxy a pooler port routed like the primary
port; `dsn --multi-host` and `dsn --role pooler`."""

from __future__ import annotations

import configparser
from dataclasses import replace
from pathlib import Path

import pytest

from pgha_operator.cli import main
from pgha_operator.core import spec, topology
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import PatroniFacts, PatroniMember
from pgha_operator.core.passfile import endpoints
from pgha_operator.core.plan import _roles
from pgha_operator.core.render import POOLER_USER, RenderContext, render_machine
from pgha_operator.core.render.pgbouncer import AUTH_QUERY
from pgha_operator.core.render.services import service_definitions
from pgha_operator.shell.state import secrets_store
from tests.unit.test_render import (
    REPO,
    SECRETS,
    haproxy_sections,
    load_manifest,
    make_ctx,
    parse_unit,
    variant,
)

DEMO = REPO / "manifests" / "demo.yaml"
MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))
POOLER_PASSWORD = 'Pool"pw-9f8e'  # a quote: the auth file doubles it
POOLER = {"enabled": True, "defaultPoolSize": 7, "maxClientConn": 300}


def pooler_ctx(**changes: object) -> RenderContext:
    ctx = make_ctx(variant(DEMO, pooler={**POOLER, **changes}))
    return replace(ctx, secrets=replace(SECRETS, pooler_password=POOLER_PASSWORD))


def ini(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(interpolation=None, delimiters=("=",))
    parser.read_string(text)
    return parser


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_off_by_default_nothing_of_it_is_rendered(path: Path) -> None:
    ctx = make_ctx(load_manifest(path))
    assert ctx.cluster.spec.pooler.enabled is False
    for m in ctx.topology.machines:
        files = render_machine(ctx, m.name)
        assert not [f for f in files if f.service == "pgbouncer" or "pgbouncer" in f.path]
        assert "pgbouncer" not in [d.name for d in service_definitions(ctx, m.name)]
        for f in files:
            if f.service == "haproxy" and not f.certificate:
                assert not [s for s in haproxy_sections(f.content) if "pooler" in s]


def test_every_node_runs_pgbouncer_in_front_of_its_own_postgres() -> None:
    ctx = pooler_ctx()
    for name in ctx.topology.postgres:
        layout = ctx.layout(name)
        files = {f.path: f for f in render_machine(ctx, name)}
        conf = ini(files[layout.pgbouncer_config].content)
        address = ctx.topology.address(name)
        assert conf["databases"]["*"] == f"host={address} port=5432"
        bouncer = conf["pgbouncer"]
        assert (bouncer["listen_addr"], bouncer["listen_port"]) == (address, "6432")
        assert bouncer["unix_socket_dir"] == ""
        assert bouncer["auth_type"] == "scram-sha-256"
        assert (bouncer["auth_user"], bouncer["auth_query"]) == (POOLER_USER, AUTH_QUERY)
        assert bouncer["auth_file"] == layout.pgbouncer_userlist
        assert (bouncer["pool_mode"], bouncer["default_pool_size"]) == ("transaction", "7")
        assert bouncer["max_client_conn"] == "300"
        assert bouncer["client_tls_sslmode"] == "require"
        assert bouncer["server_tls_sslmode"] == "verify-full"
        certificates = {p for p, f in files.items() if f.certificate and f.service == "pgbouncer"}
        tls = {bouncer[k] for k in ("client_tls_cert_file", "client_tls_key_file")}
        assert tls | {bouncer["server_tls_ca_file"]} == certificates
        userlist = files[layout.pgbouncer_userlist]
        assert userlist.content == f'"{POOLER_USER}" "Pool""pw-9f8e"\n'
        assert (userlist.mode, userlist.owner, userlist.service) == (0o600, "postgres", "pgbouncer")
        names = [d.name for d in service_definitions(ctx, name)]
        assert names.index("pgbouncer") == names.index("patroni") + 1


def test_haproxy_routes_the_pooler_port_to_the_primarys_pooler() -> None:
    ctx = pooler_ctx()
    (lb,) = ctx.topology.loadbalancers
    [cfg] = [f for f in render_machine(ctx, lb) if f.service == "haproxy" and not f.certificate]
    sections = haproxy_sections(cfg.content)
    assert sections["frontend pooler"] == [
        f"bind {ctx.topology.address(lb)}:6432",
        "default_backend pooler",
    ]
    backend = sections["backend pooler"]
    assert "http-check send meth GET uri /primary" in backend
    servers = [line for line in backend if line.startswith("server ")]
    assert [s.split()[2] for s in servers] == [
        f"{ctx.topology.address(n)}:6432" for n in ctx.topology.postgres
    ]
    assert all("maxconn 300 check port 8008" in s for s in servers)


def test_a_new_pooler_port_changes_the_definition_so_pgbouncer_restarts() -> None:
    # PgBouncer cannot rebind on reload: only a changed definition (a restart) moves it.
    before = service_definitions(pooler_ctx(), "node1")
    after = service_definitions(pooler_ctx(port=6544), "node1")
    assert [d for d in before if d.name == "pgbouncer"] != [
        d for d in after if d.name == "pgbouncer"
    ]
    same = service_definitions(pooler_ctx(defaultPoolSize=9), "node1")
    assert [d for d in before if d.name == "pgbouncer"] == [
        d for d in same if d.name == "pgbouncer"
    ]


def test_systemd_unit_raises_the_descriptor_limit_for_every_client() -> None:
    ctx = make_ctx(variant(DEMO, pooler=POOLER), manager="systemd")
    node = ctx.topology.postgres[0]
    [unit] = [f for f in render_machine(ctx, node) if f.defines == "pgbouncer"]
    service = parse_unit(unit.content)["Service"]
    assert int(service["LimitNOFILE"]) > 2 * 300
    assert service["User"] == "postgres"
    assert service["ExecStart"] == f"/usr/sbin/pgbouncer {ctx.layout(node).pgbouncer_config}"


def problems(text: str) -> list[str]:
    return [f"{p.path}: {p.reason}" for p in spec.parse_text(text, "demo.yaml")[1]]


def test_pooler_port_clashes_are_refused_only_when_enabled() -> None:
    doc = DEMO.read_text()
    [clash] = problems(doc + "  pooler: {enabled: true, port: 5432}\n")
    assert clash == "spec.pooler.port: port 5432 is also spec.postgres.port on the nodes"
    same = doc.replace("stats: 7000}", "stats: 7000, pooler: 5000}")
    assert same != doc
    assert problems(same) == []  # pooler off: its port is never bound
    [clash] = problems(same + "  pooler: {enabled: true}\n")
    assert clash == "spec.loadBalancer.ports.pooler: port 5000 is also the primary port"
    [small] = problems(doc + "  pooler: {minPoolSize: 30}\n")
    assert "minPoolSize (30) must not exceed defaultPoolSize (20)" in small


def test_the_pooler_role_is_planned_only_with_the_pooler_on() -> None:
    leader = PatroniMember(name="node1", host="127.0.10.11", port=5432,
                           api_url="https://127.0.10.11:8008", role="primary", state="running")  # fmt: skip
    observed = Observed(
        patroni=PatroniFacts(reachable=True, members=(leader,)),
        roles=frozenset({"admin", "app"}),
        databases=frozenset({"app"}),
    )
    assert _roles(observed) == []
    [create] = _roles(observed, pooler=True)
    assert (create.role, create.host) == (POOLER_USER, "127.0.10.11")
    done = Observed(
        patroni=observed.patroni, roles=frozenset({"admin", "app", POOLER_USER}),
        databases=observed.databases,
    )  # fmt: skip
    assert _roles(done, pooler=True) == []


def test_the_passfile_lists_the_pooler_port() -> None:
    cluster = variant(DEMO, pooler=POOLER)
    topo = topology.build(cluster)
    assert ("127.0.10.201", 6432) in endpoints(cluster, topo, "app")
    plain = load_manifest(DEMO)
    assert ("127.0.10.201", 6432) not in endpoints(plain, topology.build(plain), "app")


# --- dsn -----------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Path:
    secrets_store.load_or_create(tmp_path, cluster_exists=False)
    return tmp_path


def dsn(
    state: Path, capsys: pytest.CaptureFixture[str], *args: str, manifest: Path = DEMO
) -> tuple[int, str, str]:
    code = main(["dsn", "-f", str(manifest), "--state-dir", str(state), *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_dsn_multi_host_names_every_node_and_the_session_wanted(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = dsn(state, capsys, "--multi-host")
    assert code == 0
    assert out == (
        "host=127.0.10.11,127.0.10.12,127.0.10.13 port=5432 user=app dbname=app "
        f"sslmode=verify-full sslrootcert={state}/tls/ca.crt connect_timeout=5 "
        f"passfile={state}/passfiles/app target_session_attrs=read-write"
    )
    code, out, _ = dsn(state, capsys, "--multi-host", "--role", "replicas")
    assert code == 0 and out.endswith("target_session_attrs=prefer-standby")
    code, _, err = dsn(state, capsys, "--multi-host", "--node", "node1")
    assert code != 0 and "cannot go with --node" in err


def test_dsn_role_pooler_needs_the_pooler(
    state: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = dsn(state, capsys, "--role", "pooler")
    assert code != 0 and "has no pooler (set spec.pooler.enabled)" in err
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(DEMO.read_text() + "  pooler: {enabled: true}\n")
    code, out, _ = dsn(state, capsys, "--role", "pooler", manifest=manifest)
    assert code == 0 and out.startswith("host=127.0.10.201 port=6432 user=app dbname=app ")

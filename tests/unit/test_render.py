"""The render layer: every shipped manifest rendered, parsed back and checked (pure, fast)."""

from __future__ import annotations

import configparser
import dataclasses
import json
import posixpath
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha_operator.core import render, spec, topology
from pgha_operator.core.render import (
    REPLICATION_USER,
    REST_USER,
    SUPERUSER,
    TEMPLATES_DIR,
    Binaries,
    DesiredFile,
    RenderContext,
    Secrets,
    render_all,
    render_machine,
    service_definitions,
    validation_argv,
)
from pgha_operator.core.render.pgbackrest import CONFIG_NAME, PASSFILE_NAME
from pgha_operator.core.render.services import runtime_directory, systemd_quote
from pgha_operator.core.services import definition_from_json
from pgha_operator.core.tls import placeholder_material
from pgha_operator.core.topology import Role

REPO = Path(__file__).resolve().parents[2]
PGBACKREST_FILES = (CONFIG_NAME, PASSFILE_NAME)
MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))
LOCAL_ROOT = "/tmp/pgha-render-test"  # never touched: rendering is pure

SECRETS = Secrets(
    superuser_password="Su-pw-1f2e3d",
    replication_password="Repl-pw-4c5b6a",
    admin_password="Adm-pw-7a8b9c",
    rest_password="Rest-pw-0d1e2f",
    app_password="App-pw-3a4b5c",
    stats_password="Stats-pw-6d7e8f",
)
SECRET_VALUES = {
    SECRETS.superuser_password,
    SECRETS.replication_password,
    SECRETS.admin_password,
    SECRETS.rest_password,
    SECRETS.app_password,
    SECRETS.stats_password,
}
# The seed's literal passwords (postgres/replicator/admin) must never come back.
SEED_PASSWORDS = {"postgres", "replicator", "admin"}

# `etcd --help` of etcd 3.4.23: the config-file keys are these flag names, plus the unlisted
# enable-grpc-gateway. etcd ignores a key it does not know: a typo would silently fall back
# to a default.
ETCD_FLAGS = set(
    """name data-dir wal-dir snapshot-count heartbeat-interval election-timeout
    initial-election-tick-advance listen-peer-urls listen-client-urls max-snapshots max-wals
    quota-backend-bytes backend-batch-interval backend-batch-limit max-txn-ops
    max-request-bytes max-concurrent-streams grpc-keepalive-min-time grpc-keepalive-interval
    grpc-keepalive-timeout initial-advertise-peer-urls initial-cluster initial-cluster-state
    initial-cluster-token advertise-client-urls discovery discovery-fallback discovery-proxy
    discovery-srv discovery-srv-name strict-reconfig-check pre-vote auto-compaction-retention
    auto-compaction-mode enable-v2 cert-file key-file client-cert-auth client-crl-file
    client-cert-allowed-hostname trusted-ca-file auto-tls peer-cert-file peer-key-file
    peer-client-cert-auth peer-trusted-ca-file peer-cert-allowed-cn peer-cert-allowed-hostname
    peer-auto-tls peer-crl-file cipher-suites cors host-whitelist auth-token bcrypt-cost
    auth-token-ttl enable-pprof metrics listen-metrics-urls logger log-outputs log-level
    enable-grpc-gateway
    """.split()  # noqa: SIM905 (one flag list, as etcd --help prints it)
)
# The config file reads TLS only from these two sections (keyed by the client-side flag
# names); a top-level cert-file / peer-cert-file is ignored, and https then fails to start.
ETCD_TLS_SECTIONS = {"client-transport-security", "peer-transport-security"}
ETCD_TLS_FLAGS = {"cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"}


# --- helpers --------------------------------------------------------------------------------


def load_manifest(path: Path) -> spec.Cluster:
    loaded = spec.load([path])
    assert len(loaded) == 1
    return loaded[0].cluster


def variant(path: Path, **changes: Any) -> spec.Cluster:
    """The manifest with some `spec` subtrees replaced (camelCase keys, as in YAML)."""
    doc = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = doc["spec"]
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return spec.Cluster.model_validate(doc)


def make_ctx(
    cluster: spec.Cluster,
    *,
    manager: str | None = None,
    service_user: str | None = "postgres",
    joining: frozenset[str] = frozenset(),
) -> RenderContext:
    topo = topology.build(cluster)
    local = cluster.spec.provider.type == "local"
    layouts = {
        m.name: topology.layout(f"{LOCAL_ROOT}/{m.name}" if local else "/", cluster.name)
        for m in topo.machines
    }
    return RenderContext(
        cluster=cluster,
        topology=topo,
        layouts=layouts,
        secrets=SECRETS,
        tls=placeholder_material(tuple(m.name for m in topo.machines)),
        binaries=Binaries(),
        service_user=service_user,
        service_manager=manager or ("local" if local else "systemd"),  # type: ignore[arg-type]
        etcd_joining=joining,
    )


def file_for(files: tuple[DesiredFile, ...], service: str) -> DesiredFile:
    (found,) = [f for f in files if f.service == service and not f.certificate]
    return found


def patroni_doc(ctx: RenderContext, machine: str) -> dict[str, Any]:
    return yaml.safe_load(file_for(render_machine(ctx, machine), "patroni").content)


def etcd_doc(ctx: RenderContext, machine: str) -> dict[str, Any]:
    return yaml.safe_load(file_for(render_machine(ctx, machine), "etcd").content)


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """`section-keyword [name]` -> its directive lines (comments and blanks dropped)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not raw[0].isspace():
            assert line not in sections, f"section {line!r} twice"
            current = sections.setdefault(line.strip(), [])
        else:
            assert current is not None, f"directive outside a section: {raw!r}"
            current.append(" ".join(line.split()))
    return sections


def directive(lines: list[str], keyword: str) -> list[str]:
    return [line for line in lines if line.split()[0] == keyword]


def haproxy_text(ctx: RenderContext, machine: str) -> str:
    return file_for(render_machine(ctx, machine), "haproxy").content


def all_passwords(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "password"]
        for v in node.values():
            found += all_passwords(v)
        return found
    if isinstance(node, list):
        return [p for item in node for p in all_passwords(item)]
    return []


@pytest.fixture(params=MANIFESTS, ids=[p.stem for p in MANIFESTS])
def manifest(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture
def ctx(manifest: Path) -> RenderContext:
    return make_ctx(load_manifest(manifest))


# --- the whole cluster ----------------------------------------------------------------------


def test_manifests_are_shipped() -> None:
    assert {p.stem for p in MANIFESTS} >= {"demo", "vagrant", "nspawn", "ssh.example"}


def test_templates_folder_is_found_from_code() -> None:
    assert TEMPLATES_DIR == REPO / "templates"
    for name in ("haproxy.cfg.j2", "etcd.service.j2", "patroni.service.j2", "haproxy.service.j2"):
        assert (TEMPLATES_DIR / name).is_file()


def test_render_all_is_deterministic(manifest: Path) -> None:
    first = render_all(make_ctx(load_manifest(manifest)))
    second = render_all(make_ctx(load_manifest(manifest)))
    assert first == second
    paths = [(f.machine, f.path) for f in first]
    assert len(paths) == len(set(paths)), "two files at one path"
    assert all(f.path.startswith("/") for f in first)
    assert all(f.content.endswith("\n") for f in first)


def test_each_machine_gets_the_files_of_its_roles(ctx: RenderContext) -> None:
    for m in ctx.topology.machines:
        files = render_machine(ctx, m.name)
        layout = ctx.layouts[m.name]
        configs = {f.service: f for f in files if f.service is not None}
        expected = {
            "etcd": (Role.ETCD, layout.etcd_config),
            "patroni": (Role.POSTGRES, layout.patroni_config),
            "haproxy": (Role.LOADBALANCER, layout.haproxy_config),
        }
        if ctx.cluster.spec.load_balancer.vip is not None:
            expected["keepalived"] = (Role.LOADBALANCER, layout.keepalived_config)
        assert set(configs) == {s for s, (role, _) in expected.items() if m.has(role)}
        for service, f in configs.items():
            assert f.path == expected[service][1]
            assert f.machine == m.name
        services = [d.name for d in service_definitions(ctx, m.name)]
        # Start order: the DCS first, Patroni, HAProxy, the VIP (keepalived) last.
        order = ("etcd", "patroni", "haproxy", "keepalived")
        assert services == [s for s in order if s in configs]
    assert render_all(ctx) == tuple(
        f for m in ctx.topology.machines for f in render_machine(ctx, m.name)
    )


def test_file_modes_and_owners(ctx: RenderContext) -> None:
    for f in render_all(ctx):
        if f.certificate:
            key = f.path.endswith(".key")
            assert f.mode == (0o600 if key else 0o644), f.path
            assert (
                f.owner
                == {"etcd": "etcd", "patroni": "postgres", "haproxy": "haproxy"}[str(f.service)]
            ), f.path
        elif f.service == "patroni":
            assert (f.mode, f.owner) == (0o600, "postgres"), "patroni.yml holds passwords"
        elif f.service == "haproxy":
            assert (f.mode, f.owner) == (0o600, "haproxy"), "haproxy.cfg holds the stats password"
        elif f.path.endswith("/pgbackrest.conf"):  # read by archive-push, run by PostgreSQL
            assert (f.mode, f.owner) == (0o640, "postgres"), f.path
        elif f.path.endswith("/pgbackrest.pgpass"):  # libpq refuses a passfile others read
            assert (f.mode, f.owner) == (0o600, "postgres"), f.path
        elif f.path.endswith("/check-haproxy.sh"):  # keepalived runs it as root
            assert (f.mode, f.owner) == (0o755, None), f.path
        else:
            assert (f.mode, f.owner) == (0o644, None), f.path


def test_passwords_come_only_from_secrets(ctx: RenderContext) -> None:
    for f in render_all(ctx):
        if f.service == "patroni" and not f.certificate:
            doc = yaml.safe_load(f.content)
            passwords = all_passwords(doc)
            assert passwords and set(passwords) <= SECRET_VALUES
            assert not set(passwords) & SEED_PASSWORDS
            assert SECRETS.admin_password not in f.content  # created by the operator, later
        elif f.service == "haproxy" and not f.certificate:
            # The stats page's password, on its userlist line only.
            leaks = [s for s in SECRET_VALUES - {SECRETS.stats_password} if s in f.content]
            assert not leaks, f"{f.path} leaks a password"
            assert [line for line in f.content.splitlines() if SECRETS.stats_password in line] == [
                f'    user "pgha-stats" insecure-password "{SECRETS.stats_password}"'
            ]
        elif f.path.endswith("/pgbackrest.pgpass"):
            # pgBackRest's socket logins: the superuser's password, and only it.
            assert f.content == f"*:*:*:{SUPERUSER}:{SECRETS.superuser_password}\n"
        else:
            for secret in SECRET_VALUES:
                assert secret not in f.content, f"{f.path} leaks a password"


def test_secrets_repr_hides_passwords() -> None:
    text = repr(SECRETS)
    assert not any(secret in text for secret in SECRET_VALUES)


def test_unknown_machine_and_missing_layout_are_refused() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/demo.yaml"))
    with pytest.raises(KeyError):
        render_machine(ctx, "nope")
    partial = RenderContext(
        cluster=ctx.cluster,
        topology=ctx.topology,
        layouts={},
        secrets=SECRETS,
        tls=ctx.tls,
        binaries=Binaries(),
        service_user="postgres",
        service_manager="local",
    )
    with pytest.raises(KeyError, match="no layout for machine 'node1'"):
        render_machine(partial, "node1")


# --- etcd -----------------------------------------------------------------------------------


def test_etcd_config(ctx: RenderContext) -> None:
    topo = ctx.topology
    expected_cluster = ",".join(
        f"{n}=https://{topo.address(n)}:{topo.etcd_peer_port}" for n in topo.etcd
    )
    for name in topo.etcd:
        doc = etcd_doc(ctx, name)
        keys = set(doc) - ETCD_TLS_SECTIONS
        assert keys <= ETCD_FLAGS - ETCD_TLS_FLAGS, keys - (ETCD_FLAGS - ETCD_TLS_FLAGS)
        assert not any(k.startswith("peer-") and k[5:] in ETCD_TLS_FLAGS for k in keys)
        address = topo.address(name)
        client = f"https://{address}:{topo.etcd_client_port}"
        peer = f"https://{address}:{topo.etcd_peer_port}"
        assert doc["name"] == name
        assert doc["data-dir"] == ctx.layouts[name].etcd_data
        assert doc["listen-client-urls"] == client  # one URL: no localhost, no 0.0.0.0
        assert doc["advertise-client-urls"] == client
        assert doc["listen-peer-urls"] == peer
        assert doc["initial-advertise-peer-urls"] == peer
        assert doc["initial-cluster"] == expected_cluster
        assert doc["initial-cluster-state"] == "new"
        assert doc["initial-cluster-token"] == ctx.cluster.name
        assert doc["enable-v2"] is False
        assert doc["enable-grpc-gateway"] is True  # etcd 3.4 + --config-file: off otherwise
        for key, value in doc.items():
            assert "0.0.0.0" not in str(value) and "localhost" not in str(value), key


def test_etcd_requires_client_certificates_on_both_ports(ctx: RenderContext) -> None:
    for name in ctx.topology.etcd:
        doc = etcd_doc(ctx, name)
        folder = f"{ctx.layouts[name].tls_dir}/etcd"
        expected = {
            "cert-file": f"{folder}/server.crt",
            "key-file": f"{folder}/server.key",
            "trusted-ca-file": f"{folder}/ca.crt",
            "client-cert-auth": True,
        }
        assert doc["client-transport-security"] == expected
        assert doc["peer-transport-security"] == expected
        # The files it names are the ones the machine gets, the key readable by etcd only.
        files = {f.path: f for f in render_machine(ctx, name) if f.certificate}
        assert {expected["cert-file"], expected["key-file"], expected["trusted-ca-file"]} <= set(
            files
        )
        assert files[expected["key-file"]].mode == 0o600
        assert files[expected["key-file"]].owner == "etcd"


def test_etcd_joining_member_uses_existing_state() -> None:
    cluster = load_manifest(REPO / "manifests/demo.yaml")
    ctx = make_ctx(cluster, joining=frozenset({"etcd3"}))
    assert etcd_doc(ctx, "etcd3")["initial-cluster-state"] == "existing"
    assert etcd_doc(ctx, "etcd1")["initial-cluster-state"] == "new"
    assert etcd_doc(ctx, "etcd3")["initial-cluster"].count("=https://") == 3
    with pytest.raises(ValueError, match="not etcd members"):
        render_all(make_ctx(cluster, joining=frozenset({"node1"})))


def test_colocated_etcd_runs_on_postgres_nodes() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/nspawn.yaml"))
    assert ctx.topology.etcd == ctx.topology.postgres
    files = render_machine(ctx, "node1")
    assert [f.service for f in files if f.service and not f.certificate] == ["etcd", "patroni"]
    unit = next(f for f in files if f.path.endswith("pgha-lab-patroni.service"))
    assert "pgha-lab-etcd.service" in parse_unit(unit.content)["Unit"]["After"]


# --- Patroni --------------------------------------------------------------------------------


def test_patroni_identity_rest_and_dcs(ctx: RenderContext) -> None:
    topo = ctx.topology
    for name in topo.postgres:
        doc = patroni_doc(ctx, name)
        address = topo.address(name)
        assert doc["scope"] == ctx.cluster.name
        assert doc["namespace"] == ctx.cluster.spec.patroni.namespace
        assert doc["name"] == name
        assert doc["restapi"]["listen"] == f"{address}:{topo.rest_api_port}"
        assert doc["restapi"]["connect_address"] == f"{address}:{topo.rest_api_port}"
        assert doc["restapi"]["authentication"] == {
            "username": REST_USER,
            "password": SECRETS.rest_password,
        }
        tls_dir = ctx.layouts[name].tls_dir
        assert doc["etcd3"] == {
            "hosts": [f"{topo.address(n)}:{topo.etcd_client_port}" for n in topo.etcd],
            "protocol": "https",
            "cacert": f"{tls_dir}/postgres/ca.crt",
            "cert": f"{tls_dir}/postgres/etcd-client.crt",
            "key": f"{tls_dir}/postgres/etcd-client.key",
        }
        assert "etcd" not in doc  # the v3 API only
        assert doc["log"] == {"level": "INFO"}  # stderr: no log.dir
        assert doc["watchdog"] == {"mode": "off"}
        assert doc["tags"] == {
            "nofailover": False,
            "noloadbalance": False,
            "clonefrom": False,
            "nosync": False,
        }


def test_patroni_postgresql_section(ctx: RenderContext) -> None:
    topo = ctx.topology
    sockets = set()
    for name in topo.postgres:
        pg = patroni_doc(ctx, name)["postgresql"]
        layout = ctx.layouts[name]
        address = topo.address(name)
        assert pg["listen"] == pg["connect_address"] == f"{address}:{topo.pg_port}"
        assert pg["data_dir"] == layout.pg_data
        assert pg["bin_dir"] == "/usr/lib/postgresql/15/bin"
        assert pg["pgpass"] == layout.pgpass
        ca = f"{layout.tls_dir}/postgres/ca.crt"
        tls = {"sslmode": "verify-full", "sslrootcert": ca}
        assert pg["authentication"] == {
            "superuser": {"username": SUPERUSER, "password": SECRETS.superuser_password, **tls},
            "replication": {
                "username": REPLICATION_USER,
                "password": SECRETS.replication_password,
                **tls,
            },
            "rewind": {"username": SUPERUSER, "password": SECRETS.superuser_password, **tls},
        }
        archiving = {}
        if ctx.cluster.spec.backup is not None:  # WAL to pgBackRest; replicas restore from it
            config = f"{posixpath.dirname(layout.patroni_config)}/pgbackrest.conf"
            pgbackrest = f"/usr/bin/pgbackrest --config={config} --stanza={ctx.cluster.name}"
            archiving = {"archive_mode": "on", "archive_command": f'{pgbackrest} archive-push "%p"'}
            assert pg["recovery_conf"] == {"restore_command": f'{pgbackrest} archive-get %f "%p"'}
            assert pg["create_replica_methods"] == ["pgbackrest", "basebackup"]
            assert pg["pgbackrest"]["command"].endswith(f"exec {pgbackrest} --delta restore'")
        else:
            assert not {"recovery_conf", "create_replica_methods", "pgbackrest"} & set(pg)
        assert pg["parameters"] == {
            "unix_socket_directories": layout.pg_socket_dir,
            "ssl": "on",
            "ssl_cert_file": f"{layout.tls_dir}/postgres/server.crt",
            "ssl_key_file": f"{layout.tls_dir}/postgres/server.key",
            "ssl_ca_file": ca,
            **archiving,
        }
        sockets.add(pg["parameters"]["unix_socket_directories"])
    if ctx.cluster.spec.provider.type == "local":  # one host: each node its own directory
        assert len(sockets) == len(topo.postgres)


@pytest.mark.parametrize(
    ("manifest_name", "timing"),
    [("demo", (20, 1, 4)), ("vagrant", (30, 10, 10)), ("nspawn", (20, 1, 4))],
)
def test_patroni_bootstrap_timing_per_profile(
    manifest_name: str, timing: tuple[int, int, int]
) -> None:
    ctx = make_ctx(load_manifest(REPO / f"manifests/{manifest_name}.yaml"))
    boot = patroni_doc(ctx, ctx.topology.postgres[0])["bootstrap"]
    dcs = boot["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == timing
    assert dcs["maximum_lag_on_failover"] == 1048576
    assert dcs["failsafe_mode"] is False
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["use_slots"] is True
    assert boot["initdb"] == [{"encoding": "UTF8"}, "data-checksums"]
    assert dcs == render.dynamic_config(ctx)


def test_replicas_are_made_with_a_fast_checkpoint() -> None:
    # pg_basebackup's spread checkpoint once held a new replica back for 90 s.
    ctx = make_ctx(load_manifest(REPO / "manifests/demo.yaml"))
    for node in ctx.topology.postgres:
        assert patroni_doc(ctx, node)["postgresql"]["basebackup"] == [{"checkpoint": "fast"}]


def test_patroni_parameters_defaults_and_overrides() -> None:
    demo = REPO / "manifests/demo.yaml"
    params = render.dynamic_config(make_ctx(load_manifest(demo)))["postgresql"]["parameters"]
    assert params == {
        "wal_level": "replica",
        "hot_standby": "on",
        "wal_log_hints": "on",
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_keep_size": "128MB",
        "password_encryption": "scram-sha-256",
        "max_connections": 200,  # from the manifest
    }
    cluster = variant(
        demo,
        postgres__parameters={"wal_keep_size": "1GB", "log_connections": True, "jit": False},
    )
    params = render.dynamic_config(make_ctx(cluster))["postgresql"]["parameters"]
    assert params["wal_keep_size"] == "1GB"
    assert (params["log_connections"], params["jit"]) == ("on", "off")  # PostgreSQL's spelling
    assert params["wal_level"] == "replica"


@pytest.mark.parametrize(
    ("synchronous", "mode", "strict"),
    [("off", False, False), ("on", True, False), ("strict", True, True)],
)
def test_patroni_synchronous_mode(synchronous: str, mode: bool, strict: bool) -> None:
    cluster = variant(REPO / "manifests/demo.yaml", postgres__synchronous=synchronous)
    dcs = patroni_doc(make_ctx(cluster), "node1")["bootstrap"]["dcs"]
    assert (dcs["synchronous_mode"], dcs["synchronous_mode_strict"]) == (mode, strict)


def test_pg_hba_is_under_postgresql_not_bootstrap(ctx: RenderContext) -> None:
    for name in ctx.topology.postgres:
        doc = patroni_doc(ctx, name)
        assert isinstance(doc["postgresql"]["pg_hba"], list) and doc["postgresql"]["pg_hba"]
        assert "pg_hba" not in doc["bootstrap"]
        assert "pg_hba" not in doc["bootstrap"]["dcs"].get("postgresql", {})
        assert "users" not in doc["bootstrap"]  # Patroni 4 ignores it


def test_pg_hba_rules(ctx: RenderContext) -> None:
    topo = ctx.topology
    hba = patroni_doc(ctx, topo.postgres[0])["postgresql"]["pg_hba"]
    for line in hba:
        words = line.split()
        assert "trust" not in words and "md5" not in words and "password" not in words, line
        assert words[-1] in ("scram-sha-256", "peer", "reject", "cert"), line
    balancers = [topo.address(n) for n in topo.loadbalancers]
    rejects = [f"host all {SUPERUSER},{REPLICATION_USER} {lb}/32 reject" for lb in balancers]
    assert hba[: len(rejects)] == rejects  # before anything that could let them in
    user_rules = [render.patroni.hba_line(r) for r in ctx.cluster.spec.postgres.hba]
    after_rejects = hba[len(rejects) :]
    assert after_rejects[: len(user_rules)] == user_rules
    defaults = after_rejects[len(user_rules) :]
    assert defaults[0] == "local all all scram-sha-256"
    nodes = ["127.0.0.1", *(topo.address(n) for n in topo.postgres)]
    for address in nodes:
        assert f"hostssl all all {address}/32 scram-sha-256" in defaults
        assert f"hostssl replication {REPLICATION_USER} {address}/32 scram-sha-256" in defaults
    for address in balancers:
        assert f"hostssl all all {address}/32 scram-sha-256" in defaults
        assert not any(line.startswith("hostssl replication") and address in line for line in hba)
    assert len(defaults) == len(set(defaults))
    for line in defaults[1:]:  # the cluster's network rules: TLS only, one address each
        assert line.startswith("hostssl ") and line.split()[3].endswith("/32"), line


def test_user_hba_rules_come_after_the_balancer_rejects_and_before_the_rest() -> None:
    cluster = variant(
        REPO / "manifests/demo.yaml",
        postgres__hba=[
            {"type": "host", "database": "all", "user": "all", "address": "127.0.10.13/32",
             "method": "reject"},
            {"type": "local", "database": "all", "user": "postgres", "method": "peer"},
        ],
    )  # fmt: skip
    hba = patroni_doc(make_ctx(cluster), "node1")["postgresql"]["pg_hba"]
    assert hba[:4] == [
        "host all postgres,replicator 127.0.10.201/32 reject",
        "host all all 127.0.10.13/32 reject",
        "local all postgres peer",
        "local all all scram-sha-256",
    ]
    assert hba.index("hostssl all all 127.0.10.13/32 scram-sha-256") > 0


# --- HAProxy --------------------------------------------------------------------------------


PROFILE_CHECKS = {
    "fast": "inter 500ms fastinter 100ms downinter 100ms rise 1 fall 2",
    "seed": "inter 3s fastinter 3s downinter 3s rise 2 fall 3",
}


def test_haproxy_routing(ctx: RenderContext) -> None:
    topo = ctx.topology
    ports = ctx.cluster.spec.load_balancer.ports
    for name in topo.loadbalancers:
        s = haproxy_sections(haproxy_text(ctx, name))
        address = topo.address(name)
        assert set(s) == {
            "global",
            "defaults",
            "userlist stats_users",
            "listen stats",
            "frontend primary",
            "backend primary",
            "frontend replicas",
            "backend replicas",
        }
        binds = {
            section: directive(lines, "bind")
            for section, lines in s.items()
            if section not in ("global", "userlist stats_users")
        }
        assert binds["listen stats"] == [f"bind {address}:{ports.stats}"]
        vip = ctx.cluster.spec.load_balancer.vip
        on_vip = [] if vip is None else [f"bind {vip.address}:{{}} transparent"]
        assert binds["frontend primary"] == [
            f"bind {address}:{ports.primary}",
            *(b.format(ports.primary) for b in on_vip),
        ]
        assert binds["frontend replicas"] == [
            f"bind {address}:{ports.replicas}",
            *(b.format(ports.replicas) for b in on_vip),
        ]
        assert "default_backend primary" in s["frontend primary"]
        assert not directive(s["frontend primary"], "use_backend")
        assert s["frontend replicas"][1 + len(on_vip) :] == [
            "use_backend replicas if { nbsrv(replicas) gt 0 }",
            "default_backend primary",
        ]
        for backend, uri in (("primary", "/primary"), ("replicas", "/replica")):
            lines = s[f"backend {backend}"]
            assert "option httpchk" in lines
            assert f"http-check send meth GET uri {uri}" in lines
            assert "http-check expect status 200" in lines
            assert directive(lines, "server") == [
                f"server {n} {topo.address(n)}:{topo.pg_port} "
                f"maxconn {ctx.cluster.spec.load_balancer.maxconn} check port {topo.rest_api_port} "
                f"check-sni {n} verifyhost {n}"
                for n in topo.postgres
            ]
        stats = s["listen stats"]
        for line in ("mode http", "stats enable", "stats uri /", "stats refresh 5s"):
            assert line in stats


def test_haproxy_never_binds_a_wildcard(ctx: RenderContext) -> None:
    for name in ctx.topology.loadbalancers:
        for line in haproxy_text(ctx, name).splitlines():
            if line.strip().startswith("bind"):
                assert "*" not in line and "0.0.0.0" not in line and ":::" not in line


def test_haproxy_timing_per_profile(ctx: RenderContext) -> None:
    profile = ctx.cluster.spec.profile
    for name in ctx.topology.loadbalancers:
        s = haproxy_sections(haproxy_text(ctx, name))
        inter = ctx.cluster.timing.inter
        for backend in ("backend primary", "backend replicas"):
            assert directive(s[backend], "default-server") == [
                f"default-server {PROFILE_CHECKS[profile]} on-marked-down shutdown-sessions "
                f"check-ssl verify required ca-file {ctx.layouts[name].tls_dir}/haproxy/ca.crt"
            ]
        defaults = s["defaults"]
        assert "mode tcp" in defaults and "retries 2" in defaults
        # A refused connection is redispatched at once, never retried after a turn-around.
        assert "option redispatch 1" in defaults
        timeouts = {line.split()[1]: line.split()[2] for line in directive(defaults, "timeout")}
        assert timeouts["client"] == timeouts["server"] == "30m"
        assert timeouts["check"] == inter
        assert spec.duration_ms(timeouts["connect"]) <= spec.duration_ms(inter)
        # A connect never waits longer than a check interval, nor than 1 s.
        assert spec.duration_ms(timeouts["connect"]) == min(spec.duration_ms(inter), 1000)


def test_haproxy_fast_connect_timeout_follows_a_short_inter() -> None:
    cluster = variant(
        REPO / "manifests/demo.yaml",
        loadBalancer__healthCheck={"inter": "500ms", "fastinter": "100ms", "downinter": "100ms"},
    )
    s = haproxy_sections(haproxy_text(make_ctx(cluster), "haproxy"))
    assert "timeout connect 500ms" in s["defaults"]
    assert "timeout check 500ms" in s["defaults"]


def test_haproxy_global(ctx: RenderContext) -> None:
    for name in ctx.topology.loadbalancers:
        g = haproxy_sections(haproxy_text(ctx, name))["global"]
        socket = ctx.layouts[name].haproxy_socket
        assert f"stats socket {socket} mode 600 level admin" in g
        (maxconn,) = directive(g, "maxconn")
        assert int(maxconn.split()[1]) >= 2 * len(ctx.topology.postgres)
        assert "daemon" not in g  # foreground: the supervisor or systemd owns it


# --- services -------------------------------------------------------------------------------


def test_service_definitions(ctx: RenderContext) -> None:
    b = ctx.binaries
    for m in ctx.topology.machines:
        layout = ctx.layouts[m.name]
        for d in service_definitions(ctx, m.name):
            if d.name == "etcd":
                assert d.argv == (b.etcd, "--config-file", layout.etcd_config)
                assert d.user == "etcd" and d.reload_signal is None
            elif d.name == "patroni":
                assert d.argv == (b.patroni, layout.patroni_config)
                assert d.user == "postgres" and d.reload_signal == "HUP"
                assert d.stop_timeout == 120
                assert d.env["PATH"].split(":")[0] == b.pg_bin_dir
                assert d.cwd is not None and layout.pg_data.startswith(d.cwd + "/")
            elif d.name == "keepalived":  # tests/unit/test_vip_converge.py
                assert d.argv[0] == b.keepalived and layout.keepalived_config in d.argv
            else:
                assert d.name == "haproxy"
                assert d.argv == (b.haproxy, "-W", "-db", "-f", layout.haproxy_config)
                assert d.user == "haproxy" and d.reload_signal == "USR2"


def service_file(f: DesiredFile) -> bool:
    """A service's definition (local JSON or systemd unit), not another file no service
    reads (pgBackRest's, which pgBackRest rereads on every run)."""
    return f.service is None and posixpath.basename(f.path) not in PGBACKREST_FILES


def test_local_service_files_are_the_definitions_as_json() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/demo.yaml"))
    assert ctx.service_manager == "local"
    for m in ctx.topology.machines:
        files = [f for f in render_machine(ctx, m.name) if service_file(f)]
        defs = service_definitions(ctx, m.name)
        assert [f.path for f in files] == [
            f"{ctx.layouts[m.name].services_dir}/{d.name}.json" for d in defs
        ]
        for f, d in zip(files, defs, strict=True):
            assert definition_from_json(f.content) == d
            assert json.loads(f.content)["name"] == d.name
            assert (f.mode, f.owner) == (0o644, None)


def parse_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


@pytest.mark.parametrize("manifest_name", ["demo", "vagrant", "nspawn", "ssh.example"])
def test_systemd_units(manifest_name: str) -> None:
    ctx = make_ctx(load_manifest(REPO / f"manifests/{manifest_name}.yaml"), manager="systemd")
    for m in ctx.topology.machines:
        defs = {d.name: d for d in service_definitions(ctx, m.name)}
        units = {f.path: f for f in render_machine(ctx, m.name) if service_file(f)}
        prefix = f"/etc/systemd/system/pgha-{ctx.cluster.name}-"
        assert sorted(units) == sorted(f"{prefix}{n}.service" for n in defs)
        for path, f in units.items():
            name = path.removeprefix(prefix).removesuffix(".service")
            d = defs[name]
            unit = parse_unit(f.content)
            svc = unit["Service"]
            assert (f.mode, f.owner) == (0o644, None)
            if name == "keepalived":  # a dead one leaves the VIP behind: systemd restarts it
                assert svc["Restart"] == "always"
                continue
            assert svc["Restart"] == "no"
            assert "LimitNOFILE" in svc
            assert int(svc["TimeoutStopSec"]) == int(d.stop_timeout)
            assert unit["Install"]["WantedBy"] == "multi-user.target"
            argv = shlex.split(svc["ExecStart"])
            layout = ctx.layouts[m.name]
            runtime = {
                "patroni": layout.pg_socket_dir,
                "haproxy": layout.haproxy_socket.rsplit("/", 1)[0],
            }.get(name, "")
            if runtime.startswith("/run/") or runtime.startswith("/var/run/"):
                # tmpfs: systemd recreates it at every start
                assert "/run/" + svc["RuntimeDirectory"] == runtime.removeprefix("/var")
                assert svc["RuntimeDirectoryPreserve"] == "yes"
            else:
                assert "RuntimeDirectory" not in svc
            if name == "haproxy":
                assert argv == [d.argv[0], "-Ws", "-f", d.argv[-1]]
                assert svc["Type"] == "notify"
                assert svc["ExecReload"] == "/bin/kill -s USR2 $MAINPID"
                assert svc["User"] == "haproxy"
            elif name == "patroni":
                assert argv == list(d.argv)
                assert svc["Type"] == "simple"
                assert svc["User"] == "postgres"
                assert svc["KillMode"] == "process"
                assert svc["ExecReload"] == "/bin/kill -s HUP $MAINPID"
                assert svc["WorkingDirectory"] == d.cwd
                env = dict(
                    shlex.split(v)[0].split("=", 1)
                    for v in f.content.splitlines()
                    if v.startswith("Environment=")
                    for v in [v.removeprefix("Environment=")]
                )
                assert env == dict(d.env)
            else:
                assert argv == list(d.argv)
                assert svc["Type"] == "simple"  # notify would wait for quorum
                assert "ExecReload" not in svc
                assert svc["User"] == "etcd"
                # Hardened; writes only its data dir.
                assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
                if layout.etcd_data.startswith("/var/lib/"):  # a real machine's layout
                    # systemd makes it (owned by etcd) at each start: removable by the operator.
                    assert "/var/lib/" + svc["StateDirectory"] == layout.etcd_data
                    assert svc["StateDirectoryMode"] == "0700" and "ReadWritePaths" not in svc
                else:
                    assert svc["ReadWritePaths"] == layout.etcd_data
                assert svc["PrivateTmp"] == "yes" and svc["ProtectHome"] == "yes"
                assert svc["CapabilityBoundingSet"] == ""


def test_systemd_runtime_directories_on_real_machines() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/vagrant.yaml"))
    units = {f.path: parse_unit(f.content) for f in render_all(ctx) if f.service is None}
    # Under /run/pgha/<cluster>: systemd never removes Debian's /run/postgresql or
    # /run/haproxy, which the host's own daemons use.
    patroni, haproxy = (
        units[f"/etc/systemd/system/pgha-postgres-{name}.service"]["Service"]
        for name in ("patroni", "haproxy")
    )
    assert patroni["RuntimeDirectory"] == "pgha/postgres/postgresql"
    assert haproxy["RuntimeDirectory"] == "pgha/postgres/haproxy"
    assert runtime_directory("/var/run/postgresql") == "postgresql"
    assert runtime_directory("/tmp/x/run") is None


def test_systemd_patroni_needs_a_service_user() -> None:
    ctx = make_ctx(
        load_manifest(REPO / "manifests/vagrant.yaml"), manager="systemd", service_user=None
    )
    with pytest.raises(ValueError, match="service_user"):
        render_machine(ctx, "node1")
    assert render_machine(ctx, "etcdnode")  # etcd and HAProxy run as root anyway


def test_local_manager_with_the_operators_own_user() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/demo.yaml"), service_user=None)
    f = file_for(render_machine(ctx, "node1"), "patroni")
    assert f.owner is None
    assert next(d for d in service_definitions(ctx, "node1") if d.name == "patroni").user is None


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("/usr/sbin/haproxy", "/usr/sbin/haproxy"),
        ("-Ws", "-Ws"),
        ("/srv/my dir/p.yml", '"/srv/my dir/p.yml"'),
        ("100%", '"100%%"'),
        ("$HOME", '"$$HOME"'),
        ('a"b', '"a\\"b"'),
    ],
)
def test_systemd_quote(arg: str, quoted: str) -> None:
    assert systemd_quote(arg) == quoted


def test_validation_argv() -> None:
    b = Binaries()
    assert validation_argv(b, "haproxy", "/x/h.cfg.tmp") == (b.haproxy, "-c", "-f", "/x/h.cfg.tmp")
    assert validation_argv(b, "patroni", "/x/p.yml.tmp") == (
        b.patroni,
        "--validate-config",
        "--ignore-listen-port",
        "/x/p.yml.tmp",
    )
    assert validation_argv(b, "etcd", "/x/e.yml") is None
    # Debian's Patroni 3.0.2 has no --ignore-listen-port: nothing validates beside a live node.
    debian = b.for_patroni_source("debian")
    assert validation_argv(debian, "patroni", "/x/p.yml.tmp") is None
    assert validation_argv(debian, "haproxy", "/x/h.cfg.tmp") == validation_argv(
        b, "haproxy", "/x/h.cfg.tmp"
    )


def test_debian_patroni_source_runs_debian_patroni() -> None:
    debian = variant(REPO / "manifests/nspawn.yaml", patroni__source="debian")
    ctx = make_ctx(debian, manager="systemd")
    ctx = dataclasses.replace(ctx, binaries=Binaries().for_patroni_source("debian"))
    (node,) = [m.name for m in ctx.topology.machines if m.name == "node1"]
    (patroni,) = [d for d in service_definitions(ctx, node) if d.name == "patroni"]
    assert patroni.argv[0] == "/usr/bin/patroni"
    (unit,) = [f for f in render_machine(ctx, node) if f.path.endswith("-patroni.service")]
    assert shlex.split(parse_unit(unit.content)["Service"]["ExecStart"])[0] == "/usr/bin/patroni"
    assert Binaries().for_patroni_source("pypi") == Binaries()

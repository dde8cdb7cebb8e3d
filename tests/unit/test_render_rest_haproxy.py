"""#12 in the rendered files: Patroni's REST API over https with a `ctl` section for
patronictl, HAProxy's checks over verified TLS, the stats page behind basic auth, and every
HAProxy process as the haproxy user (locally and under systemd, hardened)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pgha_operator.core import topology
from pgha_operator.core.render import REST_USER, RenderContext, render_machine
from pgha_operator.core.render.haproxy import METRICS_PATH, STATS_USER
from pgha_operator.core.render.services import haproxy_definition
from tests.unit.test_render import (
    SECRETS,
    file_for,
    haproxy_sections,
    load_manifest,
    make_ctx,
    parse_unit,
    patroni_doc,
)

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))


@pytest.fixture(params=MANIFESTS, ids=lambda p: p.stem)
def ctx(request: pytest.FixtureRequest) -> RenderContext:
    return make_ctx(load_manifest(request.param))


def test_rest_api_is_https_with_the_nodes_certificate(ctx: RenderContext) -> None:
    for name in ctx.topology.postgres:
        tls_dir = ctx.layouts[name].tls_dir
        rest = patroni_doc(ctx, name)["restapi"]
        assert rest["certfile"] == f"{tls_dir}/postgres/server.crt"
        assert rest["keyfile"] == f"{tls_dir}/postgres/server.key"
        assert rest["cafile"] == f"{tls_dir}/postgres/ca.crt"
        assert "verify_client" not in rest  # HAProxy's checks present no certificate
        # Unsafe endpoints keep asking for the password over https.
        assert rest["authentication"] == {"username": REST_USER, "password": SECRETS.rest_password}


def test_ctl_section_follows_watchdog_and_verifies(ctx: RenderContext) -> None:
    for name in ctx.topology.postgres:
        doc = patroni_doc(ctx, name)
        keys = list(doc)
        assert keys[keys.index("watchdog") + 1] == "ctl"
        assert doc["ctl"] == {
            "insecure": False,
            "cacert": f"{ctx.layouts[name].tls_dir}/postgres/ca.crt",
            "authentication": {"username": REST_USER, "password": SECRETS.rest_password},
        }


def test_the_certificate_files_named_are_rendered_for_the_node(ctx: RenderContext) -> None:
    for name in ctx.topology.postgres:
        files = render_machine(ctx, name)
        certificates = {f.path for f in files if f.certificate}
        rest = yaml.safe_load(file_for(files, "patroni").content)["restapi"]
        assert {rest["certfile"], rest["keyfile"], rest["cafile"]} <= certificates


def test_haproxy_checks_verify_the_nodes_certificate(ctx: RenderContext) -> None:
    for lb in ctx.topology.loadbalancers:
        files = render_machine(ctx, lb)
        sections = haproxy_sections(file_for(files, "haproxy").content)
        ca = f"{ctx.layouts[lb].tls_dir}/haproxy/ca.crt"
        assert ca in {f.path for f in files if f.certificate}
        for backend in ("backend primary", "backend replicas"):
            (default,) = [x for x in sections[backend] if x.startswith("default-server")]
            assert default.endswith(f"check-ssl verify required ca-file {ca}")
            servers = [x.split() for x in sections[backend] if x.startswith("server ")]
            assert [s[1] for s in servers] == list(ctx.topology.postgres)
            for words in servers:
                name = words[1]
                # SNI and hostname check on the node's name, a DNS name of its certificate.
                assert words[-4:] == ["check-sni", name, "verifyhost", name]
                assert "ssl" not in words  # PostgreSQL's traffic passes through as TCP


def test_stats_page_and_metrics_ask_for_the_generated_password(ctx: RenderContext) -> None:
    for lb in ctx.topology.loadbalancers:
        sections = haproxy_sections(file_for(render_machine(ctx, lb), "haproxy").content)
        users = sections["userlist stats_users"]
        assert users == [f'user "{STATS_USER}" insecure-password "{SECRETS.stats_password}"']
        stats = sections["listen stats"]
        auth = "http-request auth realm pgha-stats unless { http_auth(stats_users) }"
        exporter = f"http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }}"
        # HAProxy runs http-request rules in order: the auth rule must come before the
        # exporter, which answers at once (`stats auth` would not guard it).
        assert stats.index(auth) < stats.index(exporter)
        assert not any(line.startswith(("stats admin", "stats auth")) for line in stats)


def test_haproxy_runs_as_haproxy_and_owns_its_files(ctx: RenderContext) -> None:
    for lb in ctx.topology.loadbalancers:
        d = haproxy_definition(ctx, lb)
        assert d.user == "haproxy"
        cfg = file_for(render_machine(ctx, lb), "haproxy")
        assert (cfg.owner, cfg.mode) == ("haproxy", 0o600)


def test_without_root_haproxy_runs_as_the_operator() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/demo.yaml"), service_user=None)
    assert haproxy_definition(ctx, "haproxy").user is None
    assert file_for(render_machine(ctx, "haproxy"), "haproxy").owner is None


def test_local_stats_socket_lives_in_a_directory_of_its_own() -> None:
    """The local provider makes that directory haproxy's; <root>/run stays root's."""
    lay = topology.layout("/tmp/x/haproxy1")
    assert lay.haproxy_socket == "/tmp/x/haproxy1/run/haproxy/admin.sock"
    assert topology.layout("/", "demo").haproxy_socket == "/run/pgha/demo/haproxy/admin.sock"


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
}


def test_systemd_unit_runs_haproxy_as_haproxy_hardened() -> None:
    ctx = make_ctx(load_manifest(REPO / "manifests/nspawn.yaml"))
    lb = ctx.topology.loadbalancers[0]
    unit = next(f for f in render_machine(ctx, lb) if f.path.endswith("-haproxy.service"))
    svc = parse_unit(unit.content)["Service"]
    assert svc["User"] == "haproxy"
    for key, value in HARDENING.items():
        assert svc[key] == value, key
    # The stats socket's directory: the one place it writes, kept writable by systemd.
    socket_dir = ctx.layouts[lb].haproxy_socket.rsplit("/", 1)[0]
    assert "/run/" + svc["RuntimeDirectory"] == socket_dir
    assert svc["ExecReload"] == "/bin/kill -s USR2 $MAINPID"

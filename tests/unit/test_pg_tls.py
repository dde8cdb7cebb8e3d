"""PostgreSQL over TLS and no superuser through the load balancer (#12 items 2 and 7):
what render writes, what validate refuses, what `dsn` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha_operator.cli import main
from pgha_operator.core.render import REPLICATION_USER, SUPERUSER, RenderContext
from pgha_operator.core.spec import parse_text
from pgha_operator.shell.state import secrets_store
from tests.unit.test_render import (
    REPO,
    haproxy_sections,
    haproxy_text,
    make_ctx,
    patroni_doc,
    variant,
)

DEMO = REPO / "manifests/demo.yaml"
REJECT = f"host all {SUPERUSER},{REPLICATION_USER} 127.0.10.201/32 reject"


def demo_ctx(**changes: object) -> RenderContext:
    return make_ctx(variant(DEMO, **changes))


def test_postgres_runs_ssl_with_the_nodes_certificate_set_locally_not_in_the_dcs() -> None:
    ctx = demo_ctx()
    for name in ctx.topology.postgres:
        doc = patroni_doc(ctx, name)
        folder = f"{ctx.layout(name).tls_dir}/postgres"
        params = doc["postgresql"]["parameters"]
        assert params["ssl"] == "on"
        assert (params["ssl_cert_file"], params["ssl_key_file"], params["ssl_ca_file"]) == (
            f"{folder}/server.crt",
            f"{folder}/server.key",
            f"{folder}/ca.crt",
        )
        # Each local machine has its own root: the paths must not be shared through the DCS.
        dcs_params = doc["bootstrap"]["dcs"]["postgresql"]["parameters"]
        assert not any(key.startswith("ssl") for key in dcs_params)


def test_patroni_connects_with_verify_full_for_superuser_replication_and_rewind() -> None:
    ctx = demo_ctx()
    auth = patroni_doc(ctx, "node2")["postgresql"]["authentication"]
    ca = f"{ctx.layout('node2').tls_dir}/postgres/ca.crt"
    for kind in ("superuser", "replication", "rewind"):
        assert auth[kind]["sslmode"] == "verify-full", kind
        assert auth[kind]["sslrootcert"] == ca, kind


def test_the_load_balancers_superuser_reject_comes_before_every_allow_rule() -> None:
    hba = patroni_doc(demo_ctx(), "node1")["postgresql"]["pg_hba"]
    assert hba[0] == REJECT
    allows = [i for i, line in enumerate(hba) if line.endswith("scram-sha-256")]
    assert allows and min(allows) > hba.index(REJECT)
    # A manifest rule that allows everyone from everywhere still comes after the reject.
    wide = {"type": "hostssl", "address": "0.0.0.0/0", "method": "scram-sha-256"}
    hba = patroni_doc(demo_ctx(postgres__hba=[wide]), "node1")["postgresql"]["pg_hba"]
    assert hba[:2] == [REJECT, "hostssl all all 0.0.0.0/0 scram-sha-256"]


def test_network_rules_are_hostssl_and_the_socket_stays_local() -> None:
    hba = patroni_doc(demo_ctx(), "node1")["postgresql"]["pg_hba"]
    assert "local all all scram-sha-256" in hba
    assert "hostssl all all 127.0.0.1/32 scram-sha-256" in hba
    assert "hostssl replication replicator 127.0.10.12/32 scram-sha-256" in hba
    assert "hostssl all all 127.0.10.201/32 scram-sha-256" in hba  # the app through HAProxy
    assert not [line for line in hba if line.startswith("host ") and "reject" not in line]


def test_opting_in_drops_the_reject() -> None:
    cluster = variant(DEMO, postgres__superuserThroughLoadBalancer=True)
    hba = patroni_doc(make_ctx(cluster), "node1")["postgresql"]["pg_hba"]
    assert not any(line.endswith("reject") for line in hba)


def test_haproxy_connects_from_its_own_address() -> None:
    ctx = demo_ctx()
    defaults = haproxy_sections(haproxy_text(ctx, "haproxy"))["defaults"]
    assert "source 127.0.10.201" in defaults


def test_a_load_balancer_at_127_0_0_1_is_refused_by_validate() -> None:
    text = DEMO.read_text().replace("address: 127.0.10.201}", "address: 127.0.0.1}")
    assert "127.0.0.1}" in text
    clusters, problems = parse_text(text, "demo.yaml")
    assert clusters == []
    (problem,) = problems
    assert problem.path == "spec.loadBalancer.machines.0.address"
    assert "superuser could not be refused" in problem.reason


@pytest.fixture
def state(tmp_path: Path) -> Path:
    secrets_store.load_or_create(tmp_path, cluster_exists=False)
    return tmp_path


def dsn(state: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["dsn", "-f", str(DEMO), "--state-dir", str(state), *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_dsn_is_the_app_role_through_5000_verified_against_the_ca(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = secrets_store.read_secrets(state)
    assert secrets is not None
    code, out, _ = dsn(state, capsys)
    assert code == 0
    assert out == (
        f"host=127.0.10.201 port=5000 user=app dbname=app sslmode=verify-full "
        f"sslrootcert={state}/tls/ca.crt connect_timeout=5 passfile={state}/passfiles/app"
    )
    assert secrets.app_password not in out  # the password stays in the passfile
    assert "port=5001" in dsn(state, capsys, "--role", "replicas")[1]
    code, out, _ = dsn(state, capsys, "--show-password")
    assert code == 0 and out.endswith(f"password={secrets.app_password}") and "passfile" not in out


def test_dsn_refuses_the_superuser_through_the_load_balancer_and_offers_a_node(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = dsn(state, capsys, "--user", "postgres")
    assert code != 0 and out == ""
    assert "refuses postgres" in err and "--node" in err
    code, out, _ = dsn(state, capsys, "--user", "postgres", "--node", "node2")
    assert code == 0
    assert out.startswith("host=127.0.10.12 port=5432 user=postgres ")
    assert "dbname=postgres sslmode=verify-full" in out
    code, _, err = dsn(state, capsys, "--node", "nodeX")
    assert code != 0 and "nodeX" in err


def test_with_the_opt_in_a_load_balancer_may_be_at_127_0_0_1() -> None:
    text = DEMO.read_text().replace("address: 127.0.10.201}", "address: 127.0.0.1}")
    text = text.replace(
        "    synchronous:", "    superuserThroughLoadBalancer: true\n    synchronous:"
    )
    clusters, problems = parse_text(text, "demo.yaml")
    assert problems == [] and len(clusters) == 1

"""A whole cluster on the local provider: real etcd, Patroni/PostgreSQL and HAProxy.

The tests of this module share one cluster and run in file order; each leaves it converged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import rest_haproxy_checks as checks
from tests.integration.cluster_helpers import (
    Operator,
    cli,
    dsn,
    kill_leftovers,
    make_state_root,
    postmaster_pid,
    query,
    service_pid,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NETWORK = "127.0.20.0/24"  # node1-3 .11-.13, etcd1-3 .101-.103, haproxy1 .201
BODY = """  etcd: {members: 3}
  postgres: {instances: 3, parameters: {max_connections: 50}}
  loadBalancer: {instances: 1}
"""


@dataclass
class Cluster:
    root: Path
    manifest: Path
    state: Path

    def status(self) -> dict:
        return status(self.manifest, self.state)

    def dsn(self, role: str = "primary") -> str:
        return dsn(self.manifest, self.state, role)

    def pids(self) -> dict[str, int | None]:
        out = {}
        for machine in (self.state / "machines").iterdir():
            for pidfile in (machine / "run" / "pgha").glob("*.pid"):
                out[f"{machine.name}/{pidfile.stem}"] = service_pid(
                    self.state, machine.name, pidfile.stem
                )
        return out

    def primary(self) -> str:
        members = self.status()["postgres"]["members"]
        return next(m["name"] for m in members if m["role"] == "primary")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = make_state_root()
    manifest = write_manifest(root, "itest", NETWORK, BODY)
    state = root / "state"
    c = Cluster(root, manifest, state)
    try:
        res = cli("apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "240")
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        yield c
    finally:
        cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes", timeout=180)
        kill_leftovers(state)
        shutil.rmtree(root, ignore_errors=True)


def converged(c: Cluster) -> bool:
    return c.status()["phase"] == "Converged"


def test_apply_converges_writes_through_5000_reads_through_5001(cluster: Cluster) -> None:
    st = cluster.status()
    assert st["phase"] == "Converged", st
    etcd = st["etcd"]["members"]
    assert len(etcd) == 3 and all(m["healthy"] and not m["isLearner"] for m in etcd)
    roles = sorted(m["role"] for m in st["postgres"]["members"])
    assert roles == ["primary", "replica", "replica"]
    assert all(m["state"] in ("running", "streaming") for m in st["postgres"]["members"])
    primary = cluster.primary()
    backends = {(b["backend"], b["name"]): b["status"] for b in st["loadBalancer"]["backends"]}
    for name in ("node1", "node2", "node3"):
        want_primary = "UP" if name == primary else "DOWN"
        assert backends[("primary", name)].startswith(want_primary), backends
        assert backends[("replicas", name)].startswith("DOWN" if name == primary else "UP")

    query(cluster.dsn(), "CREATE TABLE IF NOT EXISTS t (id int primary key, v text)")
    query(cluster.dsn(), "INSERT INTO t VALUES (1, 'hello') ON CONFLICT DO NOTHING")

    def read_replica() -> bool:
        rows = query(cluster.dsn("replicas"), "SELECT pg_is_in_recovery(), v FROM t WHERE id = 1")
        return rows == [(True, "hello")]

    wait_for("the row on a replica through :5001", read_replica, timeout=30)


def test_wrong_password_is_refused(cluster: Cluster) -> None:
    good = cluster.dsn()
    assert "password=" not in good and "passfile=" in good  # dsn names the passfile
    bad = good + " password=wrong"  # a password in the string wins over the passfile
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        query(bad, "SELECT 1")
    # Directly on a node too, bypassing HAProxy: no trust line for 127.0.0.1 survives.
    direct = bad.replace("host=127.0.20.201", "host=127.0.20.11").replace("port=5000", "port=5432")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        query(direct, "SELECT 1")


def superuser_on(cluster: Cluster, node: str) -> str:
    res = cli(
        "dsn", "-f", str(cluster.manifest), "--state-dir", str(cluster.state),
        "--user", "postgres", "--node", node, check=True,
    )  # fmt: skip
    return res.stdout.strip() + " connect_timeout=2"


def test_clients_use_tls_verified_against_the_clusters_ca(cluster: Cluster) -> None:
    for role in ("primary", "replicas"):  # :5000 and :5001
        conninfo = cluster.dsn(role)
        assert "user=app" in conninfo and "sslmode=verify-full" in conninfo
        assert f"sslrootcert={cluster.state}/tls/ca.crt" in conninfo
        rows = query(conninfo, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert rows == [(True,)]
        plain = conninfo.replace("sslmode=verify-full", "sslmode=disable")
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
            query(plain, "SELECT 1")


def test_replication_runs_over_tls(cluster: Cluster) -> None:
    primary = cluster.primary()
    su = superuser_on(cluster, primary)
    rows = query(
        su,
        "SELECT r.application_name, s.ssl FROM pg_stat_replication r "
        "LEFT JOIN pg_stat_ssl s ON s.pid = r.pid",
    )
    assert len(rows) == 2 and all(ssl is True for _, ssl in rows), rows
    replica = next(n for n in ("node1", "node2", "node3") if n != primary)
    (conninfo,) = query(superuser_on(cluster, replica), "SHOW primary_conninfo")[0]
    assert "sslmode=verify-full" in conninfo and "sslrootcert=" in conninfo, conninfo


def test_superuser_is_refused_through_5000_and_works_on_a_node(cluster: Cluster) -> None:
    primary = cluster.primary()
    su = superuser_on(cluster, primary)
    assert query(su, "SELECT current_user") == [("postgres",)]  # the operator's way in
    address = query(su, "SELECT host(inet_server_addr())")[0][0]
    through_lb = su.replace(f"host={address} port=5432", "host=127.0.20.201 port=5000")
    assert "port=5000" in through_lb
    with pytest.raises(psycopg.OperationalError, match='rejects connection.*user "postgres"'):
        query(through_lb, "SELECT 1")  # the right password, from HAProxy's address


def test_the_app_role_owns_the_app_database(cluster: Cluster) -> None:
    su = superuser_on(cluster, cluster.primary())
    rows = query(
        su,
        "SELECT r.rolname, r.rolcanlogin, r.rolsuper, pg_get_userbyid(d.datdba) "
        "FROM pg_roles r, pg_database d WHERE r.rolname = 'app' AND d.datname = 'app'",
    )
    assert rows == [("app", True, False, "app")]
    assert query(cluster.dsn(), "SELECT current_user, current_database()") == [("app", "app")]


def test_second_apply_changes_nothing(cluster: Cluster) -> None:
    before = cluster.pids()
    res = cli("apply", "-f", str(cluster.manifest), "--state-dir", str(cluster.state))
    assert res.returncode == 0, res.stderr
    assert "->" not in res.stdout  # no action was taken
    plan = cli("plan", "-f", str(cluster.manifest), "--state-dir", str(cluster.state))
    assert plan.stdout.strip() == "no changes"
    assert cluster.pids() == before


# --- #12: Patroni's REST API, HAProxy's verified checks and stats page, least privilege ------
# (rest_haproxy_checks.py holds the checks)

NODES = {"node1": "127.0.20.11", "node2": "127.0.20.12", "node3": "127.0.20.13"}
LB, LB_ADDRESS = "haproxy1", "127.0.20.201"


def test_rest_api_is_https_only_and_unsafe_endpoints_need_the_password(cluster: Cluster) -> None:
    for address in NODES.values():
        checks.check_rest_api(cluster.state, address)


def test_patronictl_works_on_a_node(cluster: Cluster) -> None:
    listed = checks.patronictl(cluster.state, "node1", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(node in listed.stdout for node in NODES), listed.stdout
    # A REST call through the ctl section (the CA and the password): POST /reload everywhere.
    reload = checks.patronictl(cluster.state, "node2", "reload", "itest", "--force")
    assert reload.returncode == 0, reload.stderr
    assert reload.stdout.count("Reload request received") == len(NODES), reload.stdout


def test_haproxy_checks_verify_the_nodes_certificate(cluster: Cluster, tmp_path: Path) -> None:
    """A check with the cluster's settings passes; expecting another name (node1's
    certificate does not carry "node2") fails the TLS verification."""
    right = checks.probe_haproxy(tmp_path, cluster.state, "node1", NODES["node1"], "node1")
    wrong = checks.probe_haproxy(tmp_path, cluster.state, "node1", NODES["node1"], "node2")
    assert right.startswith("UP L7OK"), right
    assert wrong.startswith("DOWN L6RSP"), wrong


def test_stats_page_needs_the_password(cluster: Cluster) -> None:
    checks.check_stats_page(cluster.state, LB_ADDRESS, 7000)


def test_no_haproxy_process_runs_as_root_even_after_a_reload(cluster: Cluster) -> None:
    before = checks.check_haproxy_not_root(cluster.state, LB)
    os.kill(before[0], signal.SIGUSR2)  # the supervisor's reload: the master re-executes
    wait_for(
        "new HAProxy workers",
        lambda: set(checks.haproxy_processes(cluster.state, LB)[1:]) - set(before[1:]),
        timeout=15,
    )
    after = checks.check_haproxy_not_root(cluster.state, LB)
    assert after[0] == before[0]  # the same master, re-executed as haproxy
    query(cluster.dsn(), "SELECT 1")  # :5000 still routes


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[Operator]:
    op = Operator(cluster.manifest, cluster.state)
    try:
        yield op
    finally:
        op.stop()


def kill_and_wait_restart(state: Path, machine: str, service: str) -> None:
    old = service_pid(state, machine, service)
    assert old, f"{service} on {machine} has no pid"
    os.kill(old, signal.SIGKILL)
    wait_for(
        f"{service} on {machine} restarted",
        lambda: service_pid(state, machine, service) not in (None, old),
        timeout=30,
    )


def test_running_operator_repairs_drift(cluster: Cluster, operator: Operator) -> None:
    state = cluster.state
    # A dead HAProxy is restarted.
    kill_and_wait_restart(state, "haproxy1", "haproxy")
    # A hand-edited haproxy.cfg is restored (and reloaded).
    cfg = state / "machines" / "haproxy1" / "etc" / "haproxy" / "haproxy.cfg"
    original = cfg.read_text()
    cfg.write_text(original.replace("5001", "5999"))
    wait_for("haproxy.cfg restored", lambda: cfg.read_text() == original, timeout=30)
    # A replica's Patroni killed -> restarted and streaming again.
    replica = next(n for n in ("node1", "node2", "node3") if n != cluster.primary())
    kill_and_wait_restart(state, replica, "patroni")
    # An etcd member killed -> restarted and healthy.
    kill_and_wait_restart(state, "etcd2", "etcd")
    wait_for("cluster converged after the repairs", lambda: converged(cluster), timeout=120)


def test_switchover_beside_a_running_operator(cluster: Cluster, operator: Operator) -> None:
    from pgha_operator.shell.state import StateDir

    args = ("-f", str(cluster.manifest), "--state-dir", str(cluster.state))
    wait_for("cluster converged under the operator", lambda: converged(cluster), timeout=120)
    old = cluster.primary()
    res = cli("switchover", *args)
    assert res.returncode == 0, res.stderr
    assert "beside the running operator (pid" in res.stderr
    assert cluster.primary() != old
    # A second switchover while one runs is refused at once, naming the one that runs.
    other = StateDir(cluster.state)
    other.switchover_lock.acquire("switchover")
    try:
        res = cli("switchover", *args)
    finally:
        other.switchover_lock.release()
    assert res.returncode == 1 and "another switchover (pid" in res.stderr
    wait_for("converged after the switchover", lambda: converged(cluster), timeout=120)


def test_status_page_follows_a_switchover(cluster: Cluster) -> None:
    """`run --listen`'s page in headless Chromium shows the primary, then the new one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.browser import headless_chromium

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    op = Operator(cluster.manifest, cluster.state, "--listen", f"127.0.0.1:{port}")
    try:
        wait_for(
            "GET /readyz 200 from the running operator",
            lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200,
            timeout=120,
        )
        old = cluster.primary()

        def shown(driver: object) -> str:
            found = driver.find_elements(By.CSS_SELECTOR, '[data-cluster="itest"] .primary')  # type: ignore[attr-defined]
            return found[0].text if found else ""

        with headless_chromium() as driver:
            driver.get(f"{base}/")
            WebDriverWait(driver, 60).until(lambda d: shown(d) == old)
            row = driver.find_element(By.CSS_SELECTOR, f'[data-member="{old}"]')
            assert row.get_attribute("data-role") == "primary"
            res = cli("switchover", "-f", str(cluster.manifest), "--state-dir", str(cluster.state))
            assert res.returncode == 0, res.stderr
            new = cluster.primary()
            assert new != old
            WebDriverWait(driver, 120).until(lambda d: shown(d) == new)
            row = driver.find_element(By.CSS_SELECTOR, f'[data-member="{new}"]')
            assert row.get_attribute("data-role") == "primary"
    finally:
        op.stop()
    wait_for("converged after the switchover", lambda: converged(cluster), timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_status_over_http(cluster: Cluster) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    op = Operator(cluster.manifest, cluster.state, "--listen", f"127.0.0.1:{port}")
    try:

        def status() -> dict | None:
            resp = requests.get(f"{base}/status", timeout=2)
            return resp.json() if resp.status_code == 200 else None

        st = wait_for("GET /status from the running operator", status, timeout=60)
        assert st["cluster"] == "itest" and st["observedGeneration"] >= 1
        assert {c["type"] for c in st["conditions"]} >= {"EtcdHealthy", "PatroniConverged"}
        wait_for(
            "GET /readyz 200 (converged)",
            lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200,
            timeout=60,
        )
        health = requests.get(f"{base}/healthz", timeout=2)
        assert health.status_code == 200 and health.json()["ok"] is True
        assert requests.get(f"{base}/nothing", timeout=2).status_code == 404
        # A second operator on the same port is refused before it touches anything.
        res = cli(
            "run",
            "-f",
            str(cluster.manifest),
            "--state-dir",
            str(cluster.state),
            "--listen",
            f"127.0.0.1:{port}",
            timeout=60,
        )
        assert res.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in res.stderr
    finally:
        op.stop()
    assert "operator stopped" in op.output()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/status", timeout=2)


def test_run_serves_metrics_scrape_targets_and_json_decisions(cluster: Cluster) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    op = Operator(
        cluster.manifest, cluster.state, "--listen", f"127.0.0.1:{port}", "--log-format", "json"
    )
    try:

        def scrape() -> dict[tuple[str, frozenset], float] | None:
            text = requests.get(f"{base}/metrics", timeout=2).text
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            converged = samples.get(
                ("pgha_cluster_phase", frozenset({("cluster", "itest"), ("phase", "Converged")}))
            )
            return samples if converged == 1 else None

        try:
            samples = wait_for("/metrics says Converged", scrape, timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\noperator output:\n{op.output()[-3000:]}") from None
        itest = frozenset({("cluster", "itest")})
        assert samples[("pgha_cycles_total", itest)] > 0
        assert samples[("pgha_cycle_duration_seconds_count", itest)] > 0
        assert samples[("pgha_operator_role", itest | {("role", "leader")})] == 1
        assert samples[("pgha_operator_role", itest | {("role", "standby")})] == 0
        assert samples[("pgha_primaries", itest)] == 1
        # The file_sd list names real exporters: every target answers GET /metrics.
        groups = json.loads((cluster.state / "scrape-targets.json").read_text())
        assert {g["labels"]["job"] for g in groups} == {"patroni", "etcd", "haproxy"}
        for group in groups:
            labels = group["labels"]
            url = f"{labels['__scheme__']}://{group['targets'][0]}{labels['__metrics_path__']}"
            if labels["job"] == "haproxy":
                # HAProxy's own exporter, behind the stats page's basic auth.
                assert requests.get(url, timeout=5).status_code == 401, url
                auth = (checks.STATS_USER, checks.stats_password(cluster.state))
                resp = requests.get(url, timeout=5, auth=auth)
                assert resp.status_code == 200, url
                assert "haproxy_backend_status" in resp.text
                continue
            # Both serve TLS only: the cluster's CA; etcd also asks for a client certificate.
            tls = checks.pki.client_files(cluster.state)
            resp = requests.get(url, timeout=5, verify=tls.ca, cert=(tls.cert, tls.key))
            assert resp.status_code == 200, url
            assert "patroni_" in resp.text if labels["job"] == "patroni" else "etcd_" in resp.text
    finally:
        op.stop()
    records = [json.loads(line) for line in op.output().splitlines() if line.startswith("{")]
    decisions = [r for r in records if r.get("event") == "decision"]
    assert decisions, op.output()[-2000:]
    assert all(r["cluster"] == "itest" and r["cycle"] >= 1 for r in decisions)
    assert {"phase", "outcome", "actions", "timestamp"} <= decisions[0].keys()


def test_primary_crash_fails_over_and_old_primary_rejoins(cluster: Cluster) -> None:
    # No operator runs while the primary is down, as when its machine died: a running one
    # restarts the crashed Patroni within a second, which then keeps its leader key.
    query(cluster.dsn(), "CREATE TABLE IF NOT EXISTS w (seq int primary key)")
    acked: list[int] = []
    failed = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal failed
        seq = 0
        while not stop.is_set():
            seq += 1
            try:
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute("INSERT INTO w VALUES (%s)", (seq,))
                acked.append(seq)
            except psycopg.Error:
                failed += 1
                time.sleep(0.1)

    old_primary = cluster.primary()
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_for("some acknowledged writes", lambda: len(acked) > 20, timeout=30)
        patroni = service_pid(cluster.state, old_primary, "patroni")
        postmaster = postmaster_pid(cluster.state, old_primary)
        assert patroni and postmaster
        os.kill(patroni, signal.SIGKILL)
        os.kill(postmaster, signal.SIGKILL)
        crashed_at = len(acked)
        wait_for(
            "writes through :5000 on a new primary",
            lambda: len(acked) > crashed_at + 20 and cluster.primary() != old_primary,
            timeout=120,
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    operator = Operator(cluster.manifest, cluster.state)
    try:
        wait_for("the old primary rejoined as a replica", lambda: converged(cluster), timeout=180)
    finally:
        operator.stop()
    members = {m["name"]: m for m in cluster.status()["postgres"]["members"]}
    assert members[old_primary]["role"] == "replica"
    rows = {r[0] for r in query(cluster.dsn(), "SELECT seq FROM w")}
    lost = [s for s in acked if s not in rows]
    assert lost == [], f"acknowledged rows lost: {lost[:20]}"
    print(f"failover: {len(acked)} acked, {failed} failed attempts, 0 lost")


def test_invalid_manifest_is_refused_and_cluster_untouched(
    cluster: Cluster, operator: Operator
) -> None:
    wait_for("converged", lambda: converged(cluster), timeout=60)
    before = cluster.pids()
    good = cluster.manifest.read_text()
    try:
        cluster.manifest.write_text(good.replace("etcd: {members: 3}", "etcd: {members: 4}"))
        wait_for(
            "the error in the running operator's status",
            lambda: "even" in (cluster.status().get("manifestError") or ""),
            timeout=30,
        )
        time.sleep(3)  # several cycles with the bad manifest in place
        assert cluster.pids() == before
        assert cluster.status()["phase"] == "Converged"
    finally:
        cluster.manifest.write_text(good)
    wait_for("error cleared", lambda: not cluster.status().get("manifestError"), timeout=30)


def test_restarted_operator_adopts_services(cluster: Cluster) -> None:
    before = cluster.pids()
    first = Operator(cluster.manifest, cluster.state)
    time.sleep(3)
    first.stop()
    assert "operator stopped; the cluster keeps running" in first.output()
    assert cluster.pids() == before and converged(cluster)
    second = Operator(cluster.manifest, cluster.state)
    try:
        time.sleep(4)
        assert cluster.pids() == before
        assert "->" not in second.output()  # adopted, nothing (re)started
    finally:
        second.stop()


def test_destroy_leaves_nothing(cluster: Cluster) -> None:
    tag = f"PGHA_MACHINE={cluster.state}/".encode()
    res = cli("destroy", "-f", str(cluster.manifest), "--state-dir", str(cluster.state))
    assert res.returncode == 2 and "--yes" in res.stderr  # refuses without --yes
    res = cli("destroy", "-f", str(cluster.manifest), "--state-dir", str(cluster.state), "--yes")
    assert res.returncode == 0, res.stderr
    assert not cluster.state.exists()
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag in (entry / "environ").read_bytes():
                    left.append(entry.name)
            except OSError:
                pass
    assert left == []

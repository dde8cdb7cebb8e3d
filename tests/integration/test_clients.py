"""EtcdClient and the collectors against real etcd 3.4 processes on loopback addresses.

The cluster lives on 127.0.9.101-104 (away from hand-made labs on 127.0.9.1-21); every
process is started in its own session and stopped by PID in the fixture's finalizer.
etcd runs as the operator runs it: https on both ports, client certificates required.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from pgha_operator.core.facts.types import EtcdMember
from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.shell.clients.errors import ComponentError
from pgha_operator.shell.clients.etcd import EtcdClient, collect_etcd, member_healthy
from pgha_operator.shell.clients.etcd_lease import EtcdLeaseClient
from pgha_operator.shell.clients.haproxy import HaproxyClient, collect_haproxy
from pgha_operator.shell.clients.patroni import PatroniClient, collect_patroni
from pgha_operator.shell.clients.postgres import PostgresClient
from pgha_operator.shell.clients.tls import ClientTls
from tests.tls_lab import LabCa

pytestmark = pytest.mark.integration

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ADDR = {f"e{i}": f"127.0.9.{100 + i}" for i in range(1, 5)}
TOKEN = "pgha-test-clients"


def client_url(name: str) -> str:
    return f"https://{ADDR[name]}:2379"


def peer_url(name: str) -> str:
    return f"https://{ADDR[name]}:2380"


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def healthy(lab: EtcdLab, name: str) -> bool:
    return member_healthy(client_url(name), 0.5, lab.operator)


def port_free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


@dataclass
class EtcdLab:
    root: Path
    ca: LabCa
    operator: ClientTls  # the operator's client certificate and the CA
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, initial: list[str], state: str) -> None:
        data = self.root / name
        data.mkdir(exist_ok=True)
        # serverAuth + clientAuth, its address; peers on loopback connect from 127.0.0.1,
        # which etcd checks against a peer's certificate.
        server = self.ca.issue(name, (ADDR[name], "127.0.0.1"))
        tls = [f"--cert-file={server.cert}", f"--key-file={server.key}"]
        tls += [f"--trusted-ca-file={server.ca}", "--client-cert-auth"]
        tls += [f"--peer-cert-file={server.cert}", f"--peer-key-file={server.key}"]
        tls += [f"--peer-trusted-ca-file={server.ca}", "--peer-client-cert-auth"]
        argv = [
            ETCD,
            *tls,
            f"--name={name}",
            f"--data-dir={data / 'data'}",
            f"--listen-client-urls={client_url(name)}",
            f"--advertise-client-urls={client_url(name)}",
            f"--listen-peer-urls={peer_url(name)}",
            f"--initial-advertise-peer-urls={peer_url(name)}",
            f"--initial-cluster={','.join(f'{n}={peer_url(n)}' for n in initial)}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token={TOKEN}",
        ]
        with open(data / "log", "ab") as log:
            # Own session (setsid): a test runner's process-group signals do not reach it.
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def stop(self, name: str, timeout: float = 8.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # by PID: only the process this fixture started
            proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # A leader whose peers are gone spends seconds on a leadership transfer; the data
        # is throwaway, so do not wait long before SIGKILL.
        deadline = time.monotonic() + 2
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def etcd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdLab]:
    if not Path(ETCD).exists():
        pytest.skip(f"etcd binary not found at {ETCD}")
    for name, address in ADDR.items():
        for port in (2379, 2380):
            if not port_free(address, port):
                pytest.fail(f"{address}:{port} ({name}) is in use by another program")
    root = tmp_path_factory.mktemp("etcd")
    ca = LabCa.create(root / "tls")
    lab = EtcdLab(root, ca, ca.issue("operator", server=False))
    try:
        members = ["e1", "e2", "e3"]
        for name in members:
            lab.start(name, members, "new")
        wait_until("3 healthy etcd members", lambda: all(healthy(lab, n) for n in members))
        yield lab
    finally:
        lab.stop_all()


def urls(*names: str) -> list[str]:
    return [client_url(n) for n in names]


def test_member_list(etcd_lab: EtcdLab) -> None:
    members = EtcdClient(urls("e1", "e2", "e3"), tls=etcd_lab.operator).member_list()
    assert sorted(m.name for m in members) == ["e1", "e2", "e3"]
    assert all(m.id.isdigit() and not m.is_learner for m in members)
    e2 = next(m for m in members if m.name == "e2")
    assert e2.peer_urls == (peer_url("e2"),) and e2.client_urls == (client_url("e2"),)


def test_learner_add_start_promote_remove(etcd_lab: EtcdLab) -> None:
    client = EtcdClient(urls("e1", "e2", "e3"), tls=etcd_lab.operator)
    added: list[EtcdMember] = []

    def try_add() -> bool:
        try:
            added.append(client.add_member([peer_url("e4")], learner=True))
        except ComponentError as exc:
            # etcd refuses adds until every voter has been connected for 5 s.
            if exc.status != 503 or "unhealthy cluster" not in str(exc):
                raise
            return False
        return True

    wait_until("etcd to accept a member add", try_add)
    new = added[0]
    assert new.is_learner and new.name == "" and new.id.isdigit()

    # Only one learner at a time, and an unstarted one cannot be promoted: 412 both.
    with pytest.raises(ComponentError) as err:
        client.add_member(["https://127.0.9.105:2380"], learner=True)
    assert err.value.status == 412 and "too many learner" in str(err.value)
    with pytest.raises(ComponentError) as err:
        client.promote_member(new.id)
    assert err.value.status == 412 and "in sync with leader" in str(err.value)

    etcd_lab.start("e4", ["e1", "e2", "e3", "e4"], "existing")
    wait_until("the learner to answer /health", lambda: healthy(etcd_lab, "e4"))
    listed = {m.id: m for m in client.member_list()}
    assert listed[new.id].name == "e4" and listed[new.id].is_learner

    # A learner refuses reads (503): a client pointed at it first fails over.
    assert EtcdClient(urls("e4", "e1"), tls=etcd_lab.operator).get("/no/such/key") is None

    promoted: list[bool] = []

    def try_promote() -> bool:
        try:
            client.promote_member(new.id)
        except ComponentError as exc:
            if exc.status != 412:  # 412 until the learner has caught up
                raise
            return False
        promoted.append(True)
        return True

    wait_until("the learner to be promotable", try_promote)
    e4 = next(m for m in client.member_list() if m.id == new.id)
    assert not e4.is_learner and e4.name == "e4"

    remaining = client.remove_member(new.id)
    assert sorted(m.name for m in remaining) == ["e1", "e2", "e3"]
    etcd_lab.stop("e4")  # a removed member shuts itself down; make sure
    assert sorted(m.name for m in client.member_list()) == ["e1", "e2", "e3"]


def test_delete_key_if_value(etcd_lab: EtcdLab) -> None:
    client = EtcdClient(urls("e1", "e2", "e3"), tls=etcd_lab.operator)
    key = "/service/demo/leader"
    client.put(key, "pg1")
    assert client.delete_key_if_value(key, "pg2") is False
    assert client.get(key) == "pg1"
    assert client.delete_key_if_value(key, "pg1") is True
    assert client.get(key) is None
    assert client.delete_key_if_value(key, "pg1") is False  # absent: nothing to delete
    client.put(key, "nodé-ü")  # non-ASCII survives the round trip
    assert client.get(key) == "nodé-ü"
    assert client.delete_key_if_value(key, "nodé-ü") is True
    # A fence names the failover candidate in the same transaction, only when it holds.
    failover = "/service/demo/failover"
    client.put(key, "pg1")
    assert client.delete_key_if_value(key, "pg2", put={failover: '{"member": "pg2"}'}) is False
    assert client.get(failover) is None
    assert client.delete_key_if_value(key, "pg1", put={failover: '{"member": "pg2"}'}) is True
    assert client.get(key) is None and client.get(failover) == '{"member": "pg2"}'


def test_leader_lease_create_once_keepalive_revoke(etcd_lab: EtcdLab) -> None:
    client = EtcdLeaseClient(urls("e1", "e2", "e3"), tls=etcd_lab.operator)
    key = "/pgha-operator/demo/leader"
    lease = client.grant(5)
    revision = client.create(key, "op-a", lease)
    assert revision is not None and revision > 0
    held = client.holder(key)
    assert held is not None and (held.value, held.create_revision, held.lease) == (
        "op-a",
        revision,
        lease,
    )
    other = client.grant(5)
    assert client.create(key, "op-b", other) is None  # taken: one leader
    client.revoke(other)
    assert 0 < client.keepalive(lease) <= 5
    client.revoke(lease)
    assert client.holder(key) is None  # the key went with its lease
    assert client.keepalive(lease) <= 0  # a revoked lease cannot be kept alive


def test_fencer_release_needs_the_operators_own_leader_key(etcd_lab: EtcdLab) -> None:
    """The release is one transaction: Patroni's key names the fenced node AND the
    operator's leader key is still the one it created; otherwise nothing is deleted."""
    client = EtcdLeaseClient(urls("e1", "e2", "e3"), tls=etcd_lab.operator)
    op_key, pg_key = "/pgha-operator/demo/leader", "/service/demo/leader"
    lease = client.grant(5)
    revision = client.create(op_key, "op-a", lease)
    assert revision is not None
    client.put(pg_key, "pg1")
    for guard in (
        LeaseGuard(op_key, "op-b", revision),  # another operator's identity
        LeaseGuard(op_key, "op-a", revision + 1),  # a key created again since
        LeaseGuard("/pgha-operator/other/leader", "op-a", revision),  # absent key
    ):
        assert client.delete_key_if_value(pg_key, "pg1", guard) is False
        assert client.get(pg_key) == "pg1"
    client.revoke(lease)  # the lease ended: the same guard now fails too
    assert client.delete_key_if_value(pg_key, "pg1", LeaseGuard(op_key, "op-a", revision)) is False
    lease = client.grant(5)
    revision = client.create(op_key, "op-a", lease)
    assert revision is not None
    assert client.delete_key_if_value(pg_key, "pg1", LeaseGuard(op_key, "op-a", revision)) is True
    assert client.get(pg_key) is None
    client.revoke(lease)


def test_collect_etcd_healthy(etcd_lab: EtcdLab) -> None:
    facts = collect_etcd(urls("e1", "e2", "e3"), tls=etcd_lab.operator)
    assert facts.reachable and facts.error is None
    assert facts.healthy == {"e1", "e2", "e3"}
    assert facts.leader is not None and facts.leader.name in {"e1", "e2", "e3"}
    assert EtcdClient(urls("e1", "e2", "e3"), tls=etcd_lab.operator).unhealthy_voters() == ()


def etcdctl(endpoint: str, *tls: str) -> subprocess.CompletedProcess[str]:
    argv = ["etcdctl", f"--endpoints={endpoint}", "--dial-timeout=1s", "--command-timeout=2s"]
    return subprocess.run(
        [*argv, *tls, "member", "list"], capture_output=True, text=True, timeout=20, check=False
    )


def test_etcd_refuses_clients_without_a_certificate_of_its_ca(
    etcd_lab: EtcdLab, tmp_path: Path
) -> None:
    op = etcd_lab.operator
    url = client_url("e1")
    ok = etcdctl(url, f"--cacert={op.ca}", f"--cert={op.cert}", f"--key={op.key}")
    assert ok.returncode == 0 and "e1" in ok.stdout, ok.stderr
    # No client certificate: the handshake is refused.
    assert etcdctl(url, f"--cacert={op.ca}").returncode != 0
    # Plain http on the client port: etcd does not answer it.
    assert etcdctl(f"http://{ADDR['e1']}:2379").returncode != 0
    other = LabCa.create(tmp_path / "other", "another CA")
    stranger = other.issue("stranger", server=False)
    # A certificate of another CA (the server still verified against the right one).
    refused = etcdctl(url, f"--cacert={op.ca}", f"--cert={stranger.cert}", f"--key={stranger.key}")
    assert refused.returncode != 0

    # The operator's own reads say why, and never raise.
    for tls, why in (
        (ClientTls(op.ca, stranger.cert, stranger.key), "TLS handshake failed"),
        (ClientTls(other.cert_path, op.cert, op.key), "CERTIFICATE_VERIFY_FAILED"),
    ):
        facts = collect_etcd([url], timeout=2, tls=tls)
        assert not facts.reachable and facts.error is not None and why in facts.error
        assert not member_healthy(url, 2, tls)
    plain = collect_etcd([f"http://{ADDR['e1']}:2379"], timeout=2)
    assert not plain.reachable
    with pytest.raises(ComponentError, match="TLS handshake failed"):
        EtcdClient([url], timeout=2, tls=ClientTls(op.ca, stranger.cert, stranger.key)).get("/x")
    # The peer port requires a certificate of the CA too.
    with pytest.raises(requests.RequestException):
        requests.get(f"https://{ADDR['e1']}:2380/members", verify=op.ca, timeout=2)


PATRONI = "/opt/pgha-operator/patroni/bin/patroni"
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_ADDR = "127.0.9.111"
REST = f"http://{PG_ADDR}:8008"
AUTH = ("patroni", "rest-secret")


def patroni_config(root: Path, etcd_tls: ClientTls) -> str:
    etcd_hosts = "".join(f"\n  - {ADDR[n]}:2379" for n in ("e1", "e2", "e3"))
    return f"""\
scope: clients-test
namespace: /service/
name: pg1
restapi:
  listen: {PG_ADDR}:8008
  connect_address: {PG_ADDR}:8008
  authentication: {{username: {AUTH[0]}, password: {AUTH[1]}}}
etcd3:
  hosts:{etcd_hosts}
  protocol: https
  cacert: {etcd_tls.ca}
  cert: {etcd_tls.cert}
  key: {etcd_tls.key}
bootstrap:
  dcs: {{ttl: 20, loop_wait: 1, retry_timeout: 5}}
  initdb: [{{encoding: UTF8}}]
postgresql:
  listen: {PG_ADDR}:5432
  connect_address: {PG_ADDR}:5432
  data_dir: {root}/data
  bin_dir: {PG_BIN}
  pgpass: {root}/pgpass
  authentication:
    superuser: {{username: postgres, password: su-secret}}
    replication: {{username: replicator, password: repl-secret}}
  parameters: {{unix_socket_directories: {root}}}
  pg_hba:
  - local all postgres peer
  - host all all 127.0.0.1/32 scram-sha-256
  - host replication replicator 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture
def patroni_node(etcd_lab: EtcdLab) -> Iterator[subprocess.Popen[bytes]]:
    import os
    import tempfile

    if os.geteuid() != 0 or not Path(PATRONI).exists() or not Path(PG_BIN).exists():
        pytest.skip("needs root, the Patroni venv and PostgreSQL 15")
    for port in (8008, 5432):
        if not port_free(PG_ADDR, port):
            pytest.fail(f"{PG_ADDR}:{port} is in use by another program")
    # Not under pytest's tmp dir: its parent is mode 700 and postgres must traverse it.
    top = Path(tempfile.mkdtemp(prefix="pgha-clients-", dir="/tmp"))
    top.chmod(0o755)
    root = top / "pg1"
    root.mkdir(mode=0o700)
    shutil.chown(root, "postgres", "postgres")
    # Patroni's etcd client certificate, where postgres can read it.
    etcd_tls = etcd_lab.ca.issue("patroni-etcd", server=False)
    for path in (etcd_tls.ca, etcd_tls.cert, etcd_tls.key):
        shutil.copy(path, top)
        shutil.chown(top / Path(path).name, "postgres", "postgres")
    etcd_tls = ClientTls(
        *(str(top / Path(p).name) for p in (etcd_tls.ca, etcd_tls.cert, etcd_tls.key))
    )
    (top / "patroni.yml").write_text(patroni_config(root, etcd_tls))
    with open(top / "patroni.log", "ab") as log:
        proc = subprocess.Popen(
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
             PATRONI, str(top / "patroni.yml")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=top,  # postgres must be able to read its working directory (CI's may be 700)
        )  # fmt: skip
    try:
        try:
            wait_until("Patroni to become primary", lambda: is_primary(REST), timeout=90)
        except AssertionError as exc:
            tail = (top / "patroni.log").read_text()[-3000:]
            raise AssertionError(f"{exc}\npatroni.log:\n{tail}") from None
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)  # Patroni stops PostgreSQL itself
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(top, ignore_errors=True)


def is_primary(url: str) -> bool:
    try:
        return requests.get(f"{url}/primary", timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def test_patroni_collector_and_client(patroni_node: subprocess.Popen[bytes]) -> None:
    dead = "http://127.0.9.112:8008"  # listed but not running: must not hide the live one
    facts = collect_patroni([dead, REST])
    assert facts.reachable and facts.error is None
    assert facts.primaries == {"pg1"}
    (pg1,) = facts.members
    assert (pg1.name, pg1.role, pg1.state, pg1.api_url) == ("pg1", "primary", "running", REST)
    assert (pg1.host, pg1.port) == (PG_ADDR, 5432)
    # Just after bootstrap the member key has no timeline yet (it answers /primary 200
    # before its first DCS update carries one): facts must allow None.
    assert pg1.timeline in (None, 1)
    wait_until("the timeline in /cluster", lambda: collect_patroni([REST]).members[0].timeline == 1)
    assert facts.leader == pg1
    assert facts.dynamic_config["ttl"] == 20 and facts.dynamic_config["loop_wait"] == 1

    client = PatroniClient(f"{REST}/patroni", AUTH)
    assert client.is_primary() and client.alive()
    assert client.patroni()["patroni"]["name"] == "pg1"
    new = client.patch_config({"postgresql": {"parameters": {"max_connections": 150}}})
    assert new["postgresql"]["parameters"]["max_connections"] == 150
    # GET /config serves the node's cached DCS view: right after the PATCH it may still be
    # the old config, until the HA loop (woken by the PATCH) refreshes it.
    wait_until(
        "GET /config to show the patch",
        lambda: (
            client.config().get("postgresql", {}).get("parameters", {}).get("max_connections")
            == 150
        ),
    )
    wait_until(
        "pending_restart after a restart-only parameter change",
        lambda: collect_patroni([REST]).members[0].pending_restart,
    )
    assert client.reload() == "reload scheduled"
    assert "restarted successfully" in client.restart(only_if_pending=True)
    wait_until(
        "pending_restart to clear",
        lambda: not collect_patroni([REST]).members[0].pending_restart,
    )

    with pytest.raises(ComponentError) as err:
        client.reinitialize()  # the leader cannot be reinitialized
    assert err.value.status == 503 and "leader" in str(err.value)
    with pytest.raises(ComponentError) as err:
        client.switchover("pg1")  # nobody to switch over to
    assert err.value.status is not None and err.value.url == f"{REST}/switchover"
    with pytest.raises(ComponentError) as err:
        PatroniClient(REST, None).patch_config({"ttl": 30})  # unsafe endpoint, no auth
    assert err.value.status == 401
    check_postgres_client()  # the same node: a second Patroni would wait for this one's key


def check_postgres_client() -> None:
    db = PostgresClient(PG_ADDR, 5432, "postgres", "su-secret")
    assert db.existing_roles(["postgres", "admin"]) == {"postgres"}
    assert db.create_role("admin", "admin-secret", ("LOGIN", "CREATEDB"))
    assert not db.create_role("admin", "other")  # exists: left as it is
    assert db.existing_roles(["admin"]) == {"admin"}
    assert PostgresClient(PG_ADDR, 5432, "admin", "admin-secret").existing_roles(["admin"])
    with pytest.raises(ComponentError) as err:
        PostgresClient(PG_ADDR, 5432, "postgres", "wrong").existing_roles(["admin"])
    assert err.value.url == f"postgresql://postgres@{PG_ADDR}:5432/postgres"
    assert "password authentication failed" in str(err.value)


def test_collect_etcd_with_one_member_stopped(etcd_lab: EtcdLab) -> None:
    # Runs after the others in this module: it leaves e3 stopped.
    etcd_lab.stop("e3")
    wait_until("e3 to stop answering", lambda: not healthy(etcd_lab, "e3"))

    facts = collect_etcd(
        urls("e3", "e1", "e2"), tls=etcd_lab.operator
    )  # the dead endpoint first: fails over
    assert facts.reachable
    assert sorted(m.name for m in facts.members) == ["e1", "e2", "e3"]  # still listed
    assert facts.healthy == {"e1", "e2"}
    assert facts.leader is not None and facts.leader.name in {"e1", "e2"}
    # The precondition execute asks right before restarting an etcd member.
    assert EtcdClient(urls("e3", "e1"), tls=etcd_lab.operator).unhealthy_voters() == ("e3",)

    down = collect_etcd(urls("e3"), tls=etcd_lab.operator)
    assert not down.reachable and down.members == ()
    assert down.error is not None and client_url("e3") in down.error
    assert "connection refused" in down.error

    assert sorted(
        m.name for m in EtcdClient(urls("e3", "e1"), tls=etcd_lab.operator).member_list()
    ) == [
        "e1",
        "e2",
        "e3",
    ]
    with pytest.raises(ComponentError) as err:
        EtcdClient(urls("e3"), timeout=1, tls=etcd_lab.operator).member_list()
    assert client_url("e3") in str(err.value) and err.value.status is None

    # With a voter down etcd refuses any member add, even a learner: replacing a dead
    # member must start with removing it.
    with pytest.raises(ComponentError) as err:
        EtcdClient(urls("e1", "e2"), tls=etcd_lab.operator).add_member(
            [peer_url("e4")], learner=True
        )
    assert err.value.status == 503 and "unhealthy cluster" in str(err.value)


# ------------------------------------------------- nothing listening: facts, not exceptions

DEAD = "127.0.9.109"  # nothing runs here


def test_collectors_report_unreachable_components() -> None:
    patroni = collect_patroni([f"http://{DEAD}:8008", f"http://{DEAD}:8009"])
    assert not patroni.reachable and patroni.primaries == frozenset()
    assert patroni.error is not None and f"http://{DEAD}:8008" in patroni.error

    haproxy = collect_haproxy(f"http://{DEAD}:7000/")
    assert not haproxy.reachable and haproxy.servers == ()
    assert haproxy.error == f"http://{DEAD}:7000/;csv: connection refused"
    with pytest.raises(ComponentError, match="connection refused"):
        HaproxyClient(f"http://{DEAD}:7000/").stats()
    assert not member_healthy(f"http://{DEAD}:2379")
    assert not PatroniClient(f"http://{DEAD}:8008", timeout=1).alive()
    with pytest.raises(ComponentError, match=f"{DEAD}:5432.*refused") as err:
        PostgresClient(DEAD, 5432, "postgres", "pw", timeout=2).existing_roles(["admin"])
    assert err.value.url == f"postgresql://postgres@{DEAD}:5432/postgres"


def test_patroni_client_error_names_the_url() -> None:
    client = PatroniClient(f"http://{DEAD}:8008/patroni", ("u", "p"), timeout=1)
    assert client.api_url == f"http://{DEAD}:8008"
    with pytest.raises(ComponentError) as err:
        client.switchover("pg1")
    assert f"http://{DEAD}:8008/switchover" in str(err.value)
    assert err.value.url == f"http://{DEAD}:8008/switchover"

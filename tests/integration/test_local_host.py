"""LocalHost and its supervisor against real processes (sleep, sh, python, postgres)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgha_operator.core.services import definition_from_json, definition_to_json
from pgha_operator.shell.hosts.base import HostError, ServiceDefinition, ServiceState
from pgha_operator.shell.hosts.local import LocalHost
from pgha_operator.shell.hosts.procfs import proc_starttime
from pgha_operator.shell.hosts.supervisor import (
    TAG_VAR,
    LocalService,
    check_definition,
    write_definition,
)

pytestmark = pytest.mark.integration

IS_ROOT = os.geteuid() == 0


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


needs_root_postgres = pytest.mark.skipif(
    not (IS_ROOT and _has_user("postgres")), reason="needs root and a postgres user"
)
PG_BIN = "/usr/lib/postgresql/15/bin"


def _gone(pid: int) -> bool:
    """Dead or a zombie (this machine's PID 1 never reaps orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[Callable[[str], LocalHost]]:
    """Machines under tmp_path with unique tags; every process they own is killed at the
    end by tag, even when the test failed."""
    hosts: list[LocalHost] = []

    def make(name: str = "m1", root: str | None = None) -> LocalHost:
        h = LocalHost(name, root or str(tmp_path / name), f"pgha-test-{uuid.uuid4().hex}")
        hosts.append(h)
        return h

    try:
        yield make
    finally:
        for h in hosts:
            h.kill_all(timeout=10)


@pytest.fixture
def host(make_host: Callable[[str], LocalHost]) -> LocalHost:
    return make_host("m1")


def define(host: LocalHost, name: str, argv: list[str], **kw: object) -> LocalService:
    write_definition(host, ServiceDefinition(name=name, argv=tuple(argv), **kw))  # type: ignore[arg-type]
    return host.service(name)


def sh(script: str) -> list[str]:
    return ["sh", "-c", textwrap.dedent(script)]


# ---- definitions (pure)


def test_definition_json_roundtrip_is_stable(host: LocalHost) -> None:
    d = ServiceDefinition(
        name="etcd",
        argv=("etcd", "--name", "e1"),
        user="etcd",
        env={"B": "2", "A": "1"},
        cwd="/var/lib/etcd",
        reload_signal="USR2",
        stop_timeout=5.0,
    )
    text = definition_to_json(d)
    assert text.endswith("}\n")
    assert text.index('"A"') < text.index('"B"')
    back = definition_from_json(text)
    assert back == d
    assert definition_to_json(back) == text
    assert write_definition(host, d) is True
    assert write_definition(host, d) is False  # stable bytes: no change reported
    assert host.service("etcd").definition() == d


def test_bad_definition_is_refused(host: LocalHost) -> None:
    svc = host.service("bad")
    for text in (
        '{"name": "bad", "argv": []}',
        '{"name": "bad", "argv": ["sleep", "60"], "reload_signal": "NOPE"}',
        '{"name": "bad", "argv": ["sleep", "60"], "cwd": "relative"}',
        '{"name": "bad"}',
        "not json",
    ):
        host.write(svc.definition_path, text.encode())
        with pytest.raises(HostError, match="bad definition"):
            svc.start()
        assert svc.state() == ServiceState.STOPPED
    with pytest.raises(ValueError):
        check_definition(ServiceDefinition(name="x", argv=("true",), stop_timeout=0))


# ---- files


def test_write_is_idempotent_and_fixes_mode(host: LocalHost) -> None:
    path = os.path.join(host.root, "etc/app/app.conf")
    old_umask = os.umask(0o077)  # parents must still come out 0755
    try:
        assert host.write(path, b"a=1\n", mode=0o640) is True
    finally:
        os.umask(old_umask)
    assert host.read(path) == b"a=1\n"
    assert os.stat(path).st_mode & 0o7777 == 0o640
    for d in ("etc", "etc/app"):
        assert os.stat(os.path.join(host.root, d)).st_mode & 0o7777 == 0o755
    assert host.write(path, b"a=1\n", mode=0o640) is False
    assert host.write(path, b"a=1\n", mode=0o600) is True  # mode alone is a change
    assert os.stat(path).st_mode & 0o7777 == 0o600
    assert host.write(path, b"a=2\n", mode=0o600) is True
    assert host.read(path) == b"a=2\n"


@needs_root_postgres
def test_write_owner(host: LocalHost) -> None:
    pg = pwd.getpwnam("postgres")
    path = os.path.join(host.root, "data/secret")
    assert host.write(path, b"x", mode=0o600, owner="postgres") is True
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (pg.pw_uid, pg.pw_gid)
    assert os.stat(os.path.dirname(path)).st_uid == 0  # parents stay root's
    assert host.write(path, b"x", mode=0o600, owner="postgres") is False
    assert host.write(path, b"x", mode=0o600) is True  # back to the operator's user
    assert os.stat(path).st_uid == 0


def test_write_is_atomic(host: LocalHost, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(host.root, "f.txt")
    host.write(path, b"old")
    with open(path, "rb") as reader:  # a reader of the old file keeps a complete old file
        host.write(path, b"new")
        assert reader.read() == b"old"
    assert host.read(path) == b"new"
    with pytest.raises(HostError, match="no such user"):
        host.write(path, b"broken", owner="no-such-user-pgha")

    # A failure half-way leaves the old file whole and no temporary file behind.
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(HostError, match="simulated I/O error"):
        host.write(path, b"half")
    monkeypatch.undo()
    assert host.read(path) == b"new"
    assert [p.name for p in Path(host.root).iterdir()] == ["f.txt"]


def test_read_remove_ensure_dir(host: LocalHost) -> None:
    assert host.read(os.path.join(host.root, "missing")) is None
    d = os.path.join(host.root, "a/b/c")
    assert host.ensure_dir(d, mode=0o700) is True
    assert host.ensure_dir(d, mode=0o700) is False
    os.chmod(d, 0o755)
    assert host.ensure_dir(d, mode=0o700) is True
    assert os.stat(d).st_mode & 0o7777 == 0o700
    host.write(os.path.join(d, "f"), b"1")
    host.remove(os.path.join(host.root, "a"))  # a whole tree
    assert not os.path.exists(os.path.join(host.root, "a"))
    host.remove(os.path.join(host.root, "a"))  # absent: fine
    host.write(os.path.join(host.root, "g"), b"1")
    host.remove(os.path.join(host.root, "g"))
    assert host.read(os.path.join(host.root, "g")) is None


# ---- commands


def test_run_success_failure_and_timeout(host: LocalHost) -> None:
    r = host.run(["sh", "-c", 'echo "$PGHA_MACHINE"; cat'], input="in\n")
    assert r.ok and r.stdout == f"{host.tag}\nin\n"
    with pytest.raises(HostError) as e:
        host.run(sh("echo boom-detail >&2; exit 3"))
    assert "m1" in str(e.value) and "exit code 3" in str(e.value)
    assert "boom-detail" in str(e.value) and "sh -c" in str(e.value)
    r = host.run(sh("exit 4"), check=False)
    assert r.returncode == 4 and not r.ok
    with pytest.raises(HostError, match="exit code 127"):
        host.run(["/nonexistent/pgha-binary"])
    t0 = time.monotonic()
    with pytest.raises(HostError, match="timed out"):
        # the grandchild keeps the pipes open: killing the process group must still return
        host.run(sh("sleep 30 & sleep 30"), timeout=0.3)
    assert time.monotonic() - t0 < 5


@needs_root_postgres
def test_run_as_postgres(host: LocalHost) -> None:
    r = host.run(["id", "-un"], user="postgres")
    assert r.stdout.strip() == "postgres"
    assert host.run(["sh", "-c", "echo $HOME"], user="postgres").stdout.strip() == (
        pwd.getpwnam("postgres").pw_dir
    )
    assert host.run(["id", "-un"], user="root").stdout.strip() == "root"
    with pytest.raises(HostError, match="as postgres"):
        host.run(["sh", "-c", "exit 1"], user="postgres")


# ---- services


def test_service_start_state_stop(host: LocalHost) -> None:
    svc = define(host, "sleeper", ["sleep", "60"], env={"FOO": "bar"})
    assert svc.state() == ServiceState.STOPPED and svc.pid() is None
    svc.start()
    assert svc.state() == ServiceState.RUNNING
    pid = svc.pid()
    assert pid is not None
    rec = json.loads(Path(svc.pid_path).read_text())
    assert rec == {"pid": pid, "starttime": proc_starttime(pid)}
    env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if e)
    assert env[TAG_VAR] == host.tag and env["FOO"] == "bar" and env["LANG"] == "C.UTF-8"
    assert "VIRTUAL_ENV" not in env and "PYTEST_CURRENT_TEST" not in env  # a clean env
    assert os.getsid(pid) == pid  # its own session
    assert host.processes() == [pid]
    svc.start()  # already running: nothing happens
    assert svc.pid() == pid
    svc.stop()
    assert svc.state() == ServiceState.STOPPED and _gone(pid)
    assert not os.path.exists(svc.pid_path)
    svc.stop()  # idempotent
    svc.restart()
    assert svc.state() == ServiceState.RUNNING and svc.pid() != pid
    assert "starting sleep 60" in Path(svc.log_path).read_text()


def test_a_definition_with_the_pickup_pending_mark_restarts(host: LocalHost) -> None:
    """The plan writes a changed definition with one trailing blank line until its restart
    is done (plan.PICKUP_PENDING): the supervisor must read it as the same definition."""
    d = ServiceDefinition(name="sleeper", argv=("sleep", "60"), env={"FOO": "pending"})
    svc = define(host, "sleeper", ["sleep", "60"])
    svc.start()
    pid = svc.pid()
    host.write(svc.definition_path, (definition_to_json(d) + "\n").encode())
    svc.restart()
    new = svc.pid()
    assert svc.state() == ServiceState.RUNNING and new is not None and new != pid
    env = Path(f"/proc/{new}/environ").read_text().split("\0")
    assert "FOO=pending" in env


def test_concurrent_starts_make_one_process(host: LocalHost) -> None:
    define(host, "once", ["sleep", "60"])
    errors: list[BaseException] = []

    def start() -> None:
        try:
            host.service("once").start()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert host.processes() == [host.service("once").pid()]


def test_stop_escalates_to_sigkill(host: LocalHost) -> None:
    svc = define(
        host,
        "stubborn",
        sh("trap '' TERM; while :; do sleep 0.1; done"),
        stop_timeout=0.5,
    )
    svc.start()
    pid = svc.pid()
    assert pid is not None
    t0 = time.monotonic()
    svc.stop()
    assert 0.4 < time.monotonic() - t0 < 5
    assert _gone(pid) and svc.state() == ServiceState.STOPPED
    assert host.processes() == []  # its sleeps died with the group


@needs_root_postgres
def test_service_as_postgres(host: LocalHost) -> None:
    svc = define(host, "pgsvc", sh('id -un; echo "home=$HOME"; exec sleep 60'), user="postgres")
    svc.start()
    assert _wait_for(lambda: "home=" in Path(svc.log_path).read_text())
    log = Path(svc.log_path).read_text()
    assert "postgres\nhome=" in log
    assert os.stat(svc.log_path).st_uid == pwd.getpwnam("postgres").pw_uid
    pid = svc.pid()
    assert pid is not None and os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("postgres").pw_uid
    svc.stop()
    assert _gone(pid)


def test_service_survives_its_operator_and_is_adopted(
    host: LocalHost, make_host: Callable[..., LocalHost]
) -> None:
    define(host, "daemon", ["sleep", "60"])
    # A separate operator process starts the service and exits.
    code = (
        "import sys; from pgha_operator.shell.hosts.local import LocalHost; "
        "LocalHost('m1', sys.argv[1], sys.argv[2]).service('daemon').start()"
    )
    subprocess.run(
        [sys.executable, "-c", code, host.root, host.tag],
        check=True,
        timeout=30,
        start_new_session=True,
    )
    # A fresh object (as in a restarted operator) adopts it from the pid file.
    again = LocalHost("m1", host.root, host.tag).service("daemon")
    assert again.state() == ServiceState.RUNNING
    pid = again.pid()
    assert pid is not None
    again.start()  # no second copy
    assert host.processes() == [pid]
    # The same within one process: the supervisor object can be dropped.
    svc = define(host, "other", ["sleep", "60"])
    svc.start()
    other_pid = svc.pid()
    del svc
    assert host.service("other").pid() == other_pid
    again.stop()
    host.service("other").stop()
    assert _gone(pid) and host.processes() == []


def test_reused_pid_is_not_running(host: LocalHost) -> None:
    svc = define(host, "ghost", ["sleep", "60"])
    # Some process holds the recorded pid, but it started at another time: not ours.
    stranger = subprocess.Popen(["sleep", "60"], env={**os.environ, TAG_VAR: host.tag})
    try:
        real = proc_starttime(stranger.pid)
        assert real is not None
        host.write(svc.pid_path, json.dumps({"pid": stranger.pid, "starttime": real + 1}).encode())
        assert svc.state() == ServiceState.FAILED and svc.pid() is None
        svc.stop()  # must not signal the stranger
        assert stranger.poll() is None
        assert svc.state() == ServiceState.STOPPED
        svc.start()  # a real start, not an adoption of the stranger
        assert svc.pid() not in (None, stranger.pid)
        host.write(svc.pid_path, b"garbage")
        assert svc.state() == ServiceState.FAILED
        with pytest.raises(HostError, match="not running"):
            svc.reload()
    finally:
        stranger.kill()
        stranger.wait()


def test_crashing_service_is_failed(host: LocalHost) -> None:
    svc = define(host, "crash", sh('echo "fatal: bad config line 7" >&2; exit 2'))
    with pytest.raises(HostError) as e:
        svc.start()
    assert "fatal: bad config line 7" in str(e.value) and "code 2" in str(e.value)
    assert svc.state() == ServiceState.FAILED
    # A later crash (after start() returned) is reaped, never reported as running.
    late = define(host, "late", sh("sleep 0.6; exit 1"))
    late.start()
    pid = late.pid()
    assert pid is not None and late.state() == ServiceState.RUNNING
    assert _wait_for(lambda: late.state() == ServiceState.FAILED)
    assert _wait_for(lambda: not os.path.exists(f"/proc/{pid}"))  # reaped, not a zombie
    late.stop()
    assert late.state() == ServiceState.STOPPED
    with pytest.raises(HostError, match="no definition"):
        host.service("undefined").start()
    with pytest.raises(HostError, match="cannot start"):
        define(host, "nobin", ["/nonexistent/pgha-daemon"]).start()


def test_reload_sends_the_signal_or_restarts(host: LocalHost, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    script = f"trap 'echo hup >> {marks}' HUP; trap 'echo usr2 >> {marks}' USR2; "
    script += "while :; do sleep 0.1; done"
    svc = define(host, "reloadable", sh(script))
    svc.start()
    pid = svc.pid()
    svc.reload()
    assert _wait_for(lambda: marks.exists() and "hup" in marks.read_text())
    assert svc.pid() == pid  # reloaded, not restarted
    svc = define(host, "reloadable", sh(script), reload_signal="USR2")
    svc.reload()
    assert _wait_for(lambda: "usr2" in marks.read_text())
    svc = define(host, "reloadable", sh(script), reload_signal=None)
    svc.reload()  # cannot reload: restart
    assert svc.state() == ServiceState.RUNNING and svc.pid() != pid


def test_processes_and_kill_all(make_host: Callable[..., LocalHost], tmp_path: Path) -> None:
    host = make_host("m1")
    neighbour = make_host("m2")
    pids = tmp_path / "pids"
    # A grandchild that left the session (like Patroni's postmaster) and one that dropped
    # its environment (like PostgreSQL backends overwriting it with their title).
    svc = define(
        host,
        "tree",
        sh(
            f"""
            setsid sleep 300 & echo $! > {pids}.setsid
            env -i sleep 300 & echo $! > {pids}.noenv
            exec sleep 300
            """
        ),
    )
    svc.start()
    nsvc = define(neighbour, "other", ["sleep", "300"])
    nsvc.start()
    bystander = subprocess.Popen(["sleep", "300"])  # not tagged: never touched
    try:
        assert _wait_for(lambda: Path(f"{pids}.noenv").exists())
        setsid_pid = int(Path(f"{pids}.setsid").read_text())
        noenv_pid = int(Path(f"{pids}.noenv").read_text())
        assert _wait_for(lambda: os.getsid(setsid_pid) == setsid_pid)
        main = svc.pid()
        assert main is not None
        assert TAG_VAR not in Path(f"/proc/{noenv_pid}/environ").read_text()
        assert set(host.processes()) == {main, setsid_pid, noenv_pid}
        # A command started through run() that daemonizes is the machine's too.
        host.run(sh("setsid sleep 300 >/dev/null 2>&1 &"))
        assert _wait_for(lambda: len(host.processes()) == 4)
        host.kill_all(timeout=5)
        assert host.processes() == []
        assert all(_gone(p) for p in (main, setsid_pid, noenv_pid))
        assert svc.state() == ServiceState.FAILED  # like a machine that lost power
        assert bystander.poll() is None
        assert nsvc.state() == ServiceState.RUNNING
    finally:
        bystander.kill()
        bystander.wait()


@needs_root_postgres
@pytest.mark.skipif(not os.path.exists(f"{PG_BIN}/initdb"), reason="needs PostgreSQL 15")
def test_kill_all_finds_postgres_backends(make_host: Callable[..., LocalHost]) -> None:
    # postgres must reach its files: pytest's tmp_path sits under a mode-700 directory.
    base = tempfile.mkdtemp(prefix="pgha-test-local-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        host = make_host("pg", base)
        data = os.path.join(base, "data")
        sock = os.path.join(base, "sock")
        host.ensure_dir(data, mode=0o700, owner="postgres")
        host.ensure_dir(sock, mode=0o755, owner="postgres")
        initdb = [f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"]
        host.run(initdb, user="postgres", timeout=60)
        svc = define(
            host,
            "postgres",
            [f"{PG_BIN}/postgres", "-D", data, "-k", sock, "-c", "listen_addresses="],
            user="postgres",
            reload_signal="HUP",
            stop_timeout=10,
        )
        svc.start()
        postmaster = svc.pid()
        assert postmaster is not None

        def backends() -> list[int]:
            return [p for p in host.processes() if p != postmaster]

        assert _wait_for(lambda: len(backends()) >= 3, timeout=10)
        untagged = [p for p in backends() if host.tag not in Path(f"/proc/{p}/environ").read_text()]
        assert untagged, "expected backends whose environment was overwritten"
        found = host.processes()
        host.kill_all(timeout=10)
        assert all(_gone(p) for p in found)
        assert svc.state() == ServiceState.FAILED
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_kill_all_with_nothing_running(host: LocalHost) -> None:
    # kill_all with nothing of ours running returns at once and signals nobody.
    me = os.getpid()
    host.kill_all(timeout=1)
    assert os.getpid() == me and host.processes() == []
    with pytest.raises(HostError, match="no definition"):
        LocalHost("x", host.root, host.tag).service("nope").reload()


# ---- teardown (shell/teardown.py) with the local provider


def test_teardown_stops_each_machines_services_gracefully_in_order(tmp_path: Path) -> None:
    """Every service gets SIGTERM on its own machine (load balancers first, etcd last) before
    the machines are removed; destroy returns with no process of the cluster left."""
    from pgha_operator.core.render import Binaries
    from pgha_operator.core.topology import Machine
    from pgha_operator.shell.providers.local import LocalProvider
    from pgha_operator.shell.teardown import teardown

    provider = LocalProvider(tmp_path / "state", None, Binaries())
    trail = tmp_path / "stopped.txt"
    services = {"m1": ["etcd", "patroni"], "m2": ["etcd", "haproxy"]}
    pids: list[int] = []
    try:
        for i, (name, names) in enumerate(services.items()):
            provider.create(Machine(name, f"127.0.0.{90 + i}", frozenset()))
            host = provider.host(name)
            for svc in names:
                script = f"""
                    trap 'echo {name} {svc} >> {trail}; exit 0' TERM
                    while :; do sleep 0.05; done
                """
                define(host, svc, sh(script)).start()
            pids += host.processes()
        assert teardown(provider) == ["m1", "m2"]  # type: ignore[arg-type]
        stopped = trail.read_text().split("\n")[:-1]
        assert stopped == ["m2 haproxy", "m1 patroni", "m1 etcd", "m2 etcd"]
        assert all(_gone(p) for p in pids)
        assert provider.machines() == []
    finally:
        for name in services:
            if os.path.isdir(provider.root(name)):
                provider.host(name).kill_all()

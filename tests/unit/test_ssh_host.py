"""SshHost against a real OpenSSH server that the test starts on a loopback address.

Root only (sshd authenticates other users, and the sudo path needs a user of its own); the
server, its keys, the test user and its sudoers entry are removed again even on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.hosts.ssh import (
    HostKeyChanged,
    HostKeyUnknown,
    SshAuthFailed,
    SshHost,
    SshTarget,
    SshUnreachable,
)
from pgha_operator.shell.providers.sshkeys import pin_host_key

SSHD = "/usr/sbin/sshd"
ADDRESS = "127.0.0.1"
TEST_USER = f"pghassh{os.getpid()}"  # per process: two suites at once must not share it
SUDOERS = Path(f"/etc/sudoers.d/{TEST_USER}")
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SSHD),
    reason="needs root and openssh-server (make setup)",
)


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((ADDRESS, port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"sshd did not listen on {ADDRESS}:{port}")


@dataclass
class Server:
    dir: Path
    port: int
    host_pub: str
    client_key: Path
    known_hosts: Path
    proc: subprocess.Popen[bytes]

    def target(self, **kw: object) -> SshTarget:
        base = SshTarget(
            name="testhost",
            address=ADDRESS,
            port=self.port,
            user="root",
            key_file=str(self.client_key),
            known_hosts=str(self.known_hosts),
            connect_timeout=5,
            retries=2,
            retry_delay=0.1,
        )
        return replace(base, **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    d = Path(tempfile.mkdtemp(prefix="pgha-sshd-", dir="/tmp"))
    d.chmod(0o755)
    made_privsep = not PRIVSEP_DIR.exists()
    made_user = False
    proc: subprocess.Popen[bytes] | None = None
    try:
        if made_privsep:
            PRIVSEP_DIR.mkdir(mode=0o755)
        host_pub = _keygen(d / "host_ed25519")
        client_pub = _keygen(d / "client")
        keys = d / "authorized_keys"
        keys.mkdir(mode=0o755)
        for user in ("root", TEST_USER):
            (keys / user).write_text(client_pub)
            (keys / user).chmod(0o644)
        # A user that is not root, with passwordless sudo: the operator's sudo path.
        subprocess.run(["userdel", TEST_USER], capture_output=True)
        subprocess.run(
            # Password "*": no password login, but not "locked" (sshd refuses locked users).
            [
                "useradd",
                "--system",
                "--home-dir",
                str(d),
                "--shell",
                "/bin/sh",
                "--password",
                "*",
                TEST_USER,
            ],
            check=True,
            capture_output=True,
        )
        made_user = True
        SUDOERS.write_text(f"{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n")
        SUDOERS.chmod(0o440)
        port = _free_port()
        config = d / "sshd_config"
        config.write_text(
            f"""Port {port}
ListenAddress {ADDRESS}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {keys}/%u
PermitRootLogin prohibit-password
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
        )
        known_hosts = d / "known_hosts"
        pin_host_key(known_hosts, ADDRESS, host_pub, port)
        log = open(d / "sshd.log", "wb")  # noqa: SIM115 - closed with the server
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(port)
        yield Server(d, port, host_pub, d / "client", known_hosts, proc)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        SUDOERS.unlink(missing_ok=True)
        if made_user:
            subprocess.run(["userdel", TEST_USER], capture_output=True)
        if made_privsep:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def host(server: Server) -> Iterator[SshHost]:
    h = SshHost(server.target(), cluster="demo")
    yield h
    h.close()


@pytest.fixture
def scratch(server: Server) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="scratch-", dir=server.dir))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- commands -------------------------------------------------------------------------------


def test_run_returns_output_and_status(host: SshHost) -> None:
    res = host.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert host.run(["cat"], input="from stdin").stdout == "from stdin"
    assert host.run(["printf", "%s", "a b; $(x)"]).stdout == "a b; $(x)"  # quoted, not run


def test_failed_command_names_host_command_and_stderr(host: SshHost) -> None:
    with pytest.raises(HostError) as err:
        host.run(["sh", "-c", "echo boom >&2; exit 7"])
    message = str(err.value)
    assert "testhost" in message and "exit code 7" in message and "boom" in message


def test_timeout_is_an_error(host: SshHost) -> None:
    started = time.monotonic()
    with pytest.raises(HostError, match="timed out after 0.5 s"):
        host.run(["sleep", "5"], timeout=0.5)
    assert time.monotonic() - started < 5


def test_connection_is_reused_and_reopened_when_dropped(host: SshHost) -> None:
    host.run(["true"])
    transport = host.connect().get_transport()
    host.run(["true"])
    assert host.connect().get_transport() is transport
    assert transport is not None
    transport.close()  # the machine rebooted, or the connection was cut
    assert host.run(["echo", "again"]).stdout == "again\n"
    assert host.connect().get_transport() is not transport


def test_run_as_another_user(host: SshHost) -> None:
    assert host.run(["id", "-un"]).stdout.strip() == "root"
    res = host.run(["sh", "-c", "id -un; pwd"], user="nobody")
    assert res.stdout.split() == ["nobody", "/"]  # from /, which every user can read


# --- files ----------------------------------------------------------------------------------


def test_write_is_atomic_with_owner_and_mode(host: SshHost, scratch: Path) -> None:
    path = str(scratch / "etc" / "conf.yml")
    assert host.read(path) is None
    assert host.write(path, b"a: 1\n", mode=0o600, owner="postgres") is True
    st = os.stat(path)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, _uid("postgres"))
    assert os.stat(scratch / "etc").st_mode & 0o777 == 0o755  # postgres can traverse it
    assert host.read(path) == b"a: 1\n"
    assert host.write(path, b"a: 1\n", mode=0o600, owner="postgres") is False  # unchanged
    assert host.write(path, b"a: 1\n", mode=0o640, owner="postgres") is True  # mode drift
    assert os.stat(path).st_mode & 0o777 == 0o640
    inode = os.stat(path).st_ino
    assert host.write(path, b"a: 2\n", mode=0o640, owner="postgres") is True
    assert os.stat(path).st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(os.listdir(scratch / "etc")) == ["conf.yml"]  # no temp file left


def test_write_to_unknown_user_is_refused(host: SshHost, scratch: Path) -> None:
    with pytest.raises(HostError, match="no such user"):
        host.write(str(scratch / "x"), b"x", owner="no-such-user-here")


def test_remove(host: SshHost, scratch: Path) -> None:
    (scratch / "d").mkdir()
    (scratch / "d" / "f").write_text("x")
    host.remove(str(scratch / "d"))
    host.remove(str(scratch / "d"))  # absent: fine
    assert not (scratch / "d").exists()


# --- sudo when the login user is not root -----------------------------------------------------


def test_sudo_path_runs_as_root_and_writes_root_files(server: Server, scratch: Path) -> None:
    h = SshHost(server.target(user=TEST_USER), cluster="demo")
    try:
        assert h.run(["id", "-u"]).stdout.strip() == "0"  # commands run as root via sudo
        assert h.run(["id", "-un"], user=TEST_USER).stdout.strip() == TEST_USER
        path = str(scratch / "private" / "secret.conf")
        assert h.write(path, b"pw: x\n", mode=0o600) is True
        st = os.stat(path)
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 0)
        assert h.read(path) == b"pw: x\n"  # a file the login user itself cannot read
        assert h.read(str(scratch / "absent")) is None
        assert h.write(path, b"pw: x\n", mode=0o600) is False
        assert sorted(os.listdir(scratch / "private")) == ["secret.conf"]
        assert not list(Path("/tmp").glob(".pgha-*"))  # the staged upload is gone
    finally:
        h.close()


# --- refusals -------------------------------------------------------------------------------


def test_unknown_host_key_is_refused_and_not_recorded(server: Server, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    h = SshHost(server.target(known_hosts=str(empty)), cluster="demo")
    with pytest.raises(HostKeyUnknown, match="never accepted automatically"):
        h.run(["true"])
    assert empty.read_text() == ""


def test_missing_known_hosts_file_is_refused(server: Server, tmp_path: Path) -> None:
    h = SshHost(server.target(known_hosts=str(tmp_path / "nope")), cluster="demo")
    with pytest.raises(HostKeyUnknown, match="does not exist"):
        h.run(["true"])


def test_changed_host_key_is_refused(server: Server, tmp_path: Path) -> None:
    other = _keygen(tmp_path / "other_host_key")
    pinned = tmp_path / "known_hosts"
    pin_host_key(pinned, ADDRESS, other, server.port)
    h = SshHost(server.target(known_hosts=str(pinned)), cluster="demo")
    started = time.monotonic()
    with pytest.raises(HostKeyChanged, match="HOST KEY CHANGED"):
        h.run(["true"])
    assert time.monotonic() - started < 3  # not retried


def test_hashed_known_hosts_entries_work(server: Server, tmp_path: Path) -> None:
    hashed = tmp_path / "known_hosts"
    shutil.copy(server.known_hosts, hashed)
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert ADDRESS not in hashed.read_text()
    h = SshHost(server.target(known_hosts=str(hashed)), cluster="demo")
    try:
        assert h.run(["echo", "ok"]).stdout == "ok\n"
    finally:
        h.close()


def test_wrong_client_key_fails_authentication(server: Server, tmp_path: Path) -> None:
    _keygen(tmp_path / "stranger")
    h = SshHost(server.target(key_file=str(tmp_path / "stranger")), cluster="demo")
    with pytest.raises(SshAuthFailed, match="authentication failed"):
        h.run(["true"])


def test_unreachable_after_retries(server: Server) -> None:
    h = SshHost(server.target(port=_free_port(), retries=3, retry_delay=0.05), cluster="demo")
    with pytest.raises(SshUnreachable, match="after 3 attempts") as err:
        h.run(["true"])
    assert "Connection refused" in str(err.value)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid

"""SshHost keeps reading a command's output until the server's EOF, not just until its exit
status: OpenSSH may send the status first. Seen on the vagrant docker lab under load, where
`id -u postgres` came back with exit 0 and no output (`invalid literal for int()`)."""

from __future__ import annotations

import pytest

from pgha_operator.shell.hosts import ssh
from pgha_operator.shell.hosts.ssh import SshHost, SshTarget


class LateOutputChannel:
    """The exit status is there at once; the output and the EOF arrive one poll later."""

    def __init__(self) -> None:
        self.polls = 0
        self.closed = False
        self.pending = b"108\n"

    @property
    def eof_received(self) -> bool:
        return self.polls >= 1 and not self.pending

    def exec_command(self, command: str) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    def recv_ready(self) -> bool:
        return self.polls >= 1 and bool(self.pending)

    def recv(self, n: int) -> bytes:
        data, self.pending = self.pending, b""
        return data

    def recv_stderr_ready(self) -> bool:
        return False


def test_output_sent_after_the_exit_status_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    chan = LateOutputChannel()

    def poll(*_: object) -> tuple[list, list, list]:
        chan.polls += 1
        return [], [], []

    monkeypatch.setattr(ssh.select, "select", poll)
    host = SshHost(
        SshTarget(name="node2", address="192.0.2.1", key_file="k", known_hosts="kh"), "c"
    )
    code, out, _ = host._communicate(chan, "id -u postgres", 5, None)  # type: ignore[arg-type]
    assert (code, out) == (0, b"108\n")

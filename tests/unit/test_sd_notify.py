"""sd_notify over a real AF_UNIX datagram socket, as systemd reads it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from structlog.testing import capture_logs

from pgha_operator.shell.sd_notify import Notifier


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = Notifier(path, None)
        assert notifier.send(READY=1, STATUS="2 clusters: a Converged")
        assert server.recv(4096) == b"READY=1\nSTATUS=2 clusters: a Converged"


def test_messages_reach_an_abstract_socket() -> None:
    name = f"pgha-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert Notifier("@" + name, None).send(WATCHDOG=1)
        assert server.recv(4096) == b"WATCHDOG=1"


def test_from_environment_takes_the_variables_away_from_child_processes() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(env)
    assert notifier.enabled and notifier.watchdog_seconds == 60.0
    assert env == {}


def test_a_watchdog_meant_for_another_process_is_not_ours() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environment(env).watchdog_seconds is None


def test_outside_systemd_nothing_is_sent_and_a_dead_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier.from_environment({}).enabled
    assert not Notifier(None, None).send(READY=1)
    with capture_logs() as logs:  # structlog may still hold an earlier test's stderr
        assert not Notifier(str(tmp_path / "gone"), None).send(READY=1)
    assert logs[0]["event"] == "sd_notify failed"

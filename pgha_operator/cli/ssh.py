"""`pgha-operator ssh [-f PATH] MACHINE [-- COMMAND...]`: a command on (or a shell to) one of
the cluster's machines, through the operator's own transport: its key, its pinned host keys
(never an unknown one), sudo rules as for every other call.

With a command: runs it as the login user, streams its output, exits with its status.
Without: an interactive shell on a pseudo-terminal (when stdin is a terminal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shlex
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any

import paramiko

from pgha_operator.cli.args import add_manifest_arguments, add_state_dir_argument, controller
from pgha_operator.core.errors import OperatorError
from pgha_operator.shell.hosts.ssh import SshHost

EXIT_NO_STATUS = 255  # like ssh(1) when the connection ends without an exit status


def add_ssh_command(sub: Any) -> argparse.ArgumentParser:
    """Register the `ssh` subcommand on the CLI's subparsers (one line in build_parser)."""
    help_text = (
        "Run a command on one of the cluster's machines, or open a shell there, over the "
        "operator's SSH transport (pinned host keys). Example: "
        "pgha-operator ssh -f manifests/nspawn.yaml node1 -- systemctl is-active pgha-lab-patroni"
    )
    p = sub.add_parser("ssh", help=help_text, description=help_text)
    p.set_defaults(func=cmd_ssh)
    add_manifest_arguments(p)
    add_state_dir_argument(p)
    p.add_argument("machine", metavar="MACHINE")
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="what to run (after --); without it, an interactive shell",
    )
    return p


def cmd_ssh(args: argparse.Namespace) -> int:
    ctl = controller(args)
    names = [m.name for m in ctl.provider.machines()]
    if args.machine not in names:
        known = ", ".join(names) or "none yet (run apply)"
        raise OperatorError(f"no machine {args.machine!r} in cluster {ctl.cluster.name}: {known}")
    host = ctl.provider.host(args.machine)
    if not isinstance(host, SshHost):
        raise OperatorError(
            f"provider {ctl.provider.kind!r} machines are not reached over SSH; its machines "
            "are directories on this host"
        )
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        if command:
            return run_command(host, shlex.join(command))
        return interactive_shell(host)
    finally:
        host.close()


def run_command(host: SshHost, command: str) -> int:
    """Stream stdout/stderr as they come; forward our stdin when it is not a terminal."""
    client = host.connect()
    transport = client.get_transport()
    assert transport is not None
    chan = transport.open_session(timeout=host.target.connect_timeout)
    chan.exec_command(command)
    stdin_open = not sys.stdin.isatty()
    if not stdin_open:
        chan.shutdown_write()
    fds: list[Any] = [chan]
    if stdin_open:
        fds.append(sys.stdin)
    while True:
        readable, _, _ = select.select(fds, [], [], 0.5)
        if chan in readable or chan.recv_ready() or chan.recv_stderr_ready():
            _pump(chan)
        if sys.stdin in readable:
            data = os.read(sys.stdin.fileno(), 65536)
            if data:
                chan.sendall(data)
            else:
                chan.shutdown_write()
                fds.remove(sys.stdin)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
    _pump(chan)
    status = chan.recv_exit_status()
    return EXIT_NO_STATUS if status < 0 else status


def _pump(chan: paramiko.Channel) -> None:
    while chan.recv_ready():
        sys.stdout.buffer.write(chan.recv(65536))
    while chan.recv_stderr_ready():
        sys.stderr.buffer.write(chan.recv_stderr(65536))
    sys.stdout.buffer.flush()
    sys.stderr.buffer.flush()


def interactive_shell(host: SshHost) -> int:
    if not sys.stdin.isatty():
        raise OperatorError("no command given and stdin is not a terminal: add -- COMMAND")
    client = host.connect()
    size = shutil.get_terminal_size()
    chan = client.invoke_shell(
        term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines
    )

    def resize(signum: int, frame: object) -> None:
        s = shutil.get_terminal_size()
        with contextlib.suppress(Exception):
            chan.resize_pty(width=s.columns, height=s.lines)

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        with _raw_terminal():
            while True:
                readable, _, _ = select.select([chan, sys.stdin], [], [])
                if chan in readable:
                    data = chan.recv(65536)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if sys.stdin in readable:
                    data = os.read(sys.stdin.fileno(), 1024)
                    if not data:
                        break
                    chan.sendall(data)
    finally:
        signal.signal(signal.SIGWINCH, previous)
    status = chan.recv_exit_status() if chan.exit_status_ready() else 0
    return status


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

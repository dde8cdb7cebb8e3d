"""A Service run by systemd on a machine, driven through `systemctl` over the machine's Host.

The unit file itself is one of the operator's rendered files (render/services.py writes
/etc/systemd/system/pgha-<cluster>-<service>.service); its hash is observed like any config, so a
hand-edited or outdated unit is drift that the plan rewrites. systemd only sees a changed
unit after `daemon-reload`: every start, reload and restart checks NeedDaemonReload first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from pgha_operator.core.render.services import unit_name, unit_prefix
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.hosts.base import CommandResult, HostError

# `systemctl is-active` answers -> our three states. A unit that is starting or reloading
# is running as far as the plan is concerned (starting it again would only wait).
_ACTIVE = {"active", "reloading", "activating", "refreshing"}
_FAILED = {"failed"}
START_TIMEOUT = 180.0  # Patroni's TimeoutStopSec is 120 s: a restart may wait that long
START_GRACE = 0.3  # a Type=simple daemon that dies at once is seen failing within this
JOURNAL_LINES = 20
SERVICES = (
    "etcd",
    "patroni",
    "pgbouncer",
    "haproxy",
    "keepalived",
)  # the daemons the operator runs


class Runner(Protocol):
    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
    ) -> CommandResult: ...


def state_from_is_active(word: str) -> ServiceState:
    word = word.strip()
    if word in _ACTIVE:
        return ServiceState.RUNNING
    if word in _FAILED:
        return ServiceState.FAILED
    return ServiceState.STOPPED


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A -p B UNIT` output (KEY=value lines)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def parse_unit_files(text: str, cluster: str) -> list[str]:
    """`systemctl list-unit-files --no-legend --plain pgha-<cluster>-*.service` -> the
    cluster's service names ("pgha-demo-etcd.service enabled enabled" -> "etcd"). Only our
    daemons count: cluster `a` must not take `pgha-a-b-etcd.service` (cluster `a-b`) as its
    own."""
    prefix = unit_prefix(cluster)
    names = []
    for line in text.splitlines():
        unit = line.split(maxsplit=1)[0] if line.strip() else ""
        service = unit.removeprefix(prefix).removesuffix(".service")
        if unit == unit_name(cluster, service) and service in SERVICES:
            names.append(service)
    return sorted(names)


def installed_services(host: Runner, cluster: str) -> list[str]:
    """Services the operator installed for `cluster` on a systemd machine: its units."""
    res = host.run(
        ["systemctl", "list-unit-files", "--no-legend", "--plain", f"{unit_prefix(cluster)}*"],
        check=False,
    )
    # Exit code 1 and no output at all: no unit matches.
    if not res.ok and res.stderr.strip():
        raise HostError(f"{host.name}: systemctl list-unit-files failed: {res.stderr.strip()}")
    return parse_unit_files(res.stdout, cluster)


class SystemdService:
    def __init__(self, host: Runner, name: str, cluster: str) -> None:
        if not name or "/" in name or name.startswith(".") or " " in name:
            raise ValueError(f"bad service name: {name!r}")
        self.host = host
        self.name = name
        self.unit = unit_name(cluster, name)

    def __repr__(self) -> str:
        return f"SystemdService({self.host.name!r}, {self.unit!r})"

    def _systemctl(self, *args: str, timeout: float = 60, check: bool = True) -> CommandResult:
        return self.host.run(["systemctl", *args], timeout=timeout, check=check)

    def _show(self, *props: str) -> dict[str, str]:
        args = [a for p in props for a in ("-p", p)]
        return parse_show(self._systemctl("show", *args, self.unit).stdout)

    # ---- observation

    def state(self) -> ServiceState:
        res = self._systemctl("is-active", self.unit, check=False)
        return state_from_is_active(res.stdout)

    def pid(self) -> int | None:
        main = self._show("MainPID").get("MainPID", "0")
        return int(main) if main.isdigit() and int(main) > 0 else None

    def needs_daemon_reload(self) -> bool:
        props = self._show("LoadState", "NeedDaemonReload")
        # not-found: the unit file was written after systemd last looked for it.
        return props.get("NeedDaemonReload") == "yes" or props.get("LoadState") == "not-found"

    def sync_unit(self) -> bool:
        """daemon-reload when the unit file on disk differs from what systemd loaded."""
        if not self.needs_daemon_reload():
            return False
        self._systemctl("daemon-reload", timeout=120)
        return True

    def reread_definition(self) -> None:
        self.sync_unit()

    # ---- control

    def start(self) -> None:
        self.sync_unit()
        # Enabled: a machine that reboots brings its service back even without the operator.
        if self._systemctl("is-enabled", self.unit, check=False).stdout.strip() != "enabled":
            self._systemctl("enable", self.unit)
        self._run_job("start")

    def stop(self) -> None:
        self._systemctl("stop", self.unit, timeout=START_TIMEOUT)

    def restart(self) -> None:
        self.sync_unit()
        self._run_job("restart")

    def reload(self) -> None:
        self.sync_unit()
        if self._show("CanReload").get("CanReload") != "yes":
            # etcd cannot re-read its configuration: a changed file means a restart.
            self._run_job("restart")
            return
        self._systemctl("reload", self.unit, timeout=START_TIMEOUT)

    def disable(self) -> None:
        self._systemctl("disable", "--now", self.unit, timeout=START_TIMEOUT, check=False)

    def _run_job(self, verb: str) -> None:
        res = self._systemctl(verb, self.unit, timeout=START_TIMEOUT, check=False)
        if res.ok:
            time.sleep(START_GRACE)
            if self.state() == ServiceState.RUNNING:
                return
        raise HostError(
            f"{self.host.name}: systemctl {verb} {self.unit} failed"
            + (f" ({res.stderr.strip()})" if res.stderr.strip() else "")
            + f"; last journal lines:\n{self.journal_tail()}"
        )

    def journal_tail(self, lines: int = JOURNAL_LINES) -> str:
        res = self.host.run(
            ["journalctl", "-u", self.unit, "-n", str(lines), "--no-pager", "-o", "cat"],
            check=False,
        )
        return res.stdout.rstrip() or res.stderr.rstrip() or "(no journal)"

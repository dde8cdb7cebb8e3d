"""SystemdService's reading of systemctl's answers (pure; the lab tests run it for real)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pgha_operator.core.services import ServiceState
from pgha_operator.shell.hosts.base import CommandResult, HostError
from pgha_operator.shell.hosts.systemd import (
    SystemdService,
    installed_services,
    parse_show,
    parse_unit_files,
    state_from_is_active,
)


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("active\n", ServiceState.RUNNING),
        ("reloading", ServiceState.RUNNING),
        ("activating", ServiceState.RUNNING),
        ("failed\n", ServiceState.FAILED),
        ("inactive\n", ServiceState.STOPPED),
        ("deactivating", ServiceState.STOPPED),
        ("", ServiceState.STOPPED),
    ],
)
def test_is_active_words(word: str, state: ServiceState) -> None:
    assert state_from_is_active(word) == state


def test_parse_show() -> None:
    text = "LoadState=loaded\nNeedDaemonReload=yes\nExecMainStatus=0\nDescription=a=b\n"
    assert parse_show(text) == {
        "LoadState": "loaded",
        "NeedDaemonReload": "yes",
        "ExecMainStatus": "0",
        "Description": "a=b",
    }


class Script:
    """A host that answers systemctl from a table and records every call."""

    name = "m1"

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
    ) -> CommandResult:
        line = " ".join(argv)
        self.calls.append(line)
        code, out = next((v for k, v in self.answers.items() if line.startswith(k)), (0, ""))
        res = CommandResult(tuple(argv), code, out, "")
        if check and code:
            raise HostError(f"{line} failed")
        return res


def test_changed_unit_is_reloaded_into_systemd_before_restart() -> None:
    host = Script(
        {
            "systemctl show -p LoadState -p NeedDaemonReload": (
                0,
                "LoadState=loaded\nNeedDaemonReload=yes\n",
            ),
            "systemctl is-active": (0, "active\n"),
        }
    )
    SystemdService(host, "patroni", "demo").restart()
    assert host.calls.index("systemctl daemon-reload") < host.calls.index(
        "systemctl restart pgha-demo-patroni.service"
    )


def test_start_enables_and_reports_the_journal_when_the_unit_dies() -> None:
    host = Script(
        {
            "systemctl show": (0, "LoadState=loaded\nNeedDaemonReload=no\n"),
            "systemctl is-enabled": (1, "disabled\n"),
            "systemctl is-active": (3, "failed\n"),
            "journalctl": (0, "etcd: bad config\n"),
        }
    )
    with pytest.raises(HostError, match="bad config"):
        SystemdService(host, "etcd", "demo").start()
    assert "systemctl enable pgha-demo-etcd.service" in host.calls
    assert "systemctl daemon-reload" not in host.calls


def test_reload_of_a_unit_that_cannot_reload_restarts_it() -> None:
    host = Script(
        {
            "systemctl show -p LoadState": (0, "LoadState=loaded\nNeedDaemonReload=no\n"),
            "systemctl show -p CanReload": (0, "CanReload=no\n"),
            "systemctl is-active": (0, "active\n"),
        }
    )
    SystemdService(host, "etcd", "demo").reload()
    assert "systemctl restart pgha-demo-etcd.service" in host.calls
    assert not any(c.startswith("systemctl reload") for c in host.calls)


def test_installed_services_are_the_clusters_pgha_units_on_the_machine() -> None:
    text = (
        "pgha-demo-etcd.service enabled enabled\n"
        "pgha-demo-patroni.service disabled enabled\n"
        # another cluster whose name starts like ours, and one of another name
        "pgha-demo-b-etcd.service enabled enabled\n"
        "pgha-other-haproxy.service enabled enabled\n"
    )
    assert parse_unit_files(text, "demo") == ["etcd", "patroni"]
    assert parse_unit_files(text, "demo-b") == ["etcd"]
    assert parse_unit_files("ssh.service enabled enabled\n\n", "demo") == []
    host = Script({"systemctl list-unit-files": (0, "pgha-demo-haproxy.service enabled enabled\n")})
    assert installed_services(host, "demo") == ["haproxy"]
    assert host.calls == ["systemctl list-unit-files --no-legend --plain pgha-demo-*"]
    # No unit matches: systemctl exits 1 without a word.
    assert installed_services(Script({"systemctl list-unit-files": (1, "")}), "demo") == []

"""In-place point-in-time restore (`pgha-operator restore --to-time T --yes`): runs the
steps of core/plan/restore.py on the cluster's machines, under the operator's lock and
lease (taken by the command, held throughout), so no running operator repairs the cluster
mid-restore.

The replay to T runs in a private PostgreSQL of the primary's node: no TCP address, a
socket in a directory only PostgreSQL's user reaches (trust there), hot_standby off (so
`pg_ctl -w` returns once it is promoted), archiving into the cluster's own stanza (the new
timeline's history file reaches the repository before any replica needs it). Patroni is
never running meanwhile: it would promote a node in recovery as soon as it led, before T.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pgha_operator.core.errors import OperatorError
from pgha_operator.core.plan.restore import RestorePlan, RestoreStep
from pgha_operator.core.render.context import SUPERUSER, Secrets
from pgha_operator.core.render.pgbackrest import PGBACKREST, backup_paths
from pgha_operator.core.render.restore import roles_sql
from pgha_operator.core.topology import Layout
from pgha_operator.shell.backups import run_backup
from pgha_operator.shell.hosts.base import Host

if TYPE_CHECKING:
    from pgha_operator.shell.controller import Controller

REPLAY_TIMEOUT = 3600  # seconds pg_ctl waits for the replay to reach T and promote
PRIMARY_TIMEOUT = 180.0
CONVERGE_TIMEOUT = 600.0
START_TIMEOUT = 30.0  # seconds for the private replay's postmaster to write its pid file
PRIVATE_DIR = "pgha-restore"  # beside the data directory, PostgreSQL's user's only


def patroni_prefix(namespace: str, cluster: str) -> str:
    """Patroni's keys of one cluster in etcd (namespace + scope), with the trailing '/' that
    keeps `demo` from matching `demo2`."""
    return f"{namespace.rstrip('/')}/{cluster}/"


def restore_in_place(
    ctl: Controller, plan: RestorePlan, say: Callable[[str], None] = print
) -> None:
    """Every step of `plan`, in order; the caller holds the operator's lock and lease."""
    secrets = ctl.secrets()
    for step in plan.steps:
        say(f"-> {step.describe}")
        _run_step(ctl, plan, step, secrets)


def _run_step(ctl: Controller, plan: RestorePlan, step: RestoreStep, secrets: Secrets) -> None:
    match step.kind:
        case "stop":
            for machine in step.machines:
                _stop_patroni(ctl, machine)
        case "clear-dcs":
            prefix = patroni_prefix(ctl.cluster.spec.patroni.namespace, ctl.cluster.name)
            ctl.clients.etcd(ctl.topology.etcd_client_urls).delete_prefix(prefix)
        case "restore":
            replay_to_target(ctl, plan, secrets)
        case "start-primary":
            ctl.provider.host(plan.primary).service("patroni").start()
            _wait_for_primary(ctl, plan.primary)
        case "backup":
            run_backup(ctl, "full", plan.primary, None, "restore")
        case "wipe":
            for machine in step.machines:
                data = ctl.layouts[machine].pg_data
                host = ctl.provider.host(machine)
                host.run(["find", data, "-mindepth", "1", "-delete"], user=ctl.user, timeout=600)
        case "converge":
            report = ctl.apply(CONVERGE_TIMEOUT)
            if not report.converged:
                raise OperatorError(
                    f"the restored cluster did not converge ({report.phase}): {report.decision}"
                )


def _stop_patroni(ctl: Controller, machine: str) -> None:
    """Patroni stops PostgreSQL with it (a fast shutdown); wait until the postmaster is gone."""
    host = ctl.provider.host(machine)
    host.service("patroni").stop()
    pid_file = posixpath.join(ctl.layouts[machine].pg_data, "postmaster.pid")
    deadline = time.monotonic() + 60
    while host.read(pid_file) is not None:
        if time.monotonic() > deadline:
            raise OperatorError(f"{machine}: PostgreSQL still runs 60 s after Patroni stopped")
        time.sleep(0.2)


def _wait_for_primary(ctl: Controller, machine: str) -> None:
    deadline = time.monotonic() + PRIMARY_TIMEOUT
    while time.monotonic() < deadline:
        _, observed = ctl.observe()
        leader = observed.patroni.leader
        if leader is not None and leader.name == machine and leader.state == "running":
            return
        time.sleep(1.0)
    raise OperatorError(f"{machine} did not become the primary within {PRIMARY_TIMEOUT:.0f} s")


def replay_to_target(ctl: Controller, plan: RestorePlan, secrets: Secrets) -> None:
    """pgbackrest --delta restore to T, the private replay until promoted, the roles'
    passwords, a clean stop, the new timeline's history file archived."""
    layout = ctl.layouts[plan.primary]
    private = posixpath.join(posixpath.dirname(layout.pg_data.rstrip("/")), PRIVATE_DIR)
    replay = _Replay(ctl.provider.host(plan.primary), layout, ctl.user, private, ctl)
    replay.prepare(plan, secrets)
    replay.start()
    try:
        replay.wait_promoted(plan.target.isoformat(sep=" "))
        replay.psql("-f", posixpath.join(private, "roles.sql"))
    finally:
        # check=False: a replay that died already must not hide why behind pg_ctl's own error
        replay.pg_ctl("-m", "fast", "-w", "stop", check=False)
    _archive_history(replay.host, layout, ctl.user, _pgbackrest(ctl, layout))
    replay.host.run(["rm", "-rf", private], user=ctl.user)


class _Replay:
    """The private PostgreSQL of the restored node (shell/restore.py's docstring)."""

    def __init__(
        self, host: Host, layout: Layout, user: str | None, private: str, ctl: Controller
    ) -> None:
        self.host, self.layout, self.user, self.private, self.ctl = host, layout, user, private, ctl
        self.bin_dir = ctl.binaries.pg_bin_dir
        self.port = ctl.topology.pg_port
        self.log = posixpath.join(private, "postgres.log")

    def prepare(self, plan: RestorePlan, secrets: Secrets) -> None:
        host, user, private = self.host, self.user, self.private
        host.run(["rm", "-rf", private], user=user)
        host.run(["mkdir", "-m", "0700", private], user=user)
        host.run(
            [
                *_pgbackrest(self.ctl, self.layout),
                "--delta",
                "--type=time",
                f"--target={plan.target.isoformat(sep=' ')}",
                "--target-action=promote",
                f"--set={plan.backup.label}",
                "restore",
            ],
            user=user,
            timeout=REPLAY_TIMEOUT,
        )
        files = {
            "postgresql.conf": private_config(self.ctl, self.layout, private, self.port),
            "pg_hba.conf": "local all all trust\n",
            "pg_ident.conf": "",
            "roles.sql": roles_sql(self.ctl.cluster.name, secrets),
        }
        for name, text in files.items():
            host.write(posixpath.join(private, name), text.encode(), mode=0o600, owner=user)

    def pg_ctl(self, *args: str, check: bool = True) -> bool:
        argv = [posixpath.join(self.bin_dir, "pg_ctl"), "-D", self.layout.pg_data, *args]
        return self.host.run(argv, user=self.user, timeout=120, check=check).ok

    def start(self) -> None:
        config = shlex.quote(posixpath.join(self.private, "postgresql.conf"))
        # -W: no wait here (pg_ctl gives up after 60 s); wait_promoted waits for the replay.
        if not self.pg_ctl(
            "-W", "-l", self.log, "-o", f"-c config_file={config}", "start", check=False
        ):
            raise OperatorError(f"{self.host.name}: the replay did not start:\n{self.log_tail()}")
        # pg_ctl -W returns before the postmaster wrote its pid file: until it has, `pg_ctl
        # status` says "no server running" (a replay taken for dead; found by the test).
        pid_file = posixpath.join(self.layout.pg_data, "postmaster.pid")
        deadline = time.monotonic() + START_TIMEOUT
        while self.host.read(pid_file) is None:
            if time.monotonic() > deadline:
                raise OperatorError(
                    f"{self.host.name}: the replay did not start within {START_TIMEOUT:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def psql(self, *args: str, check: bool = True) -> str:
        argv = [
            posixpath.join(self.bin_dir, "psql"),
            *("-h", self.private, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"),
            *("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args),
        ]
        result = self.host.run(argv, user=self.user, timeout=60, check=check)
        return result.stdout.strip() if result.ok else ""

    def wait_promoted(self, target: str) -> None:
        """Until the replay reached T and promoted (hot_standby off: no connection before);
        a postmaster that died (T beyond the archive, a missing segment) fails at once."""
        deadline = time.monotonic() + REPLAY_TIMEOUT
        while time.monotonic() < deadline:
            if self.psql("-c", "SELECT pg_is_in_recovery()", check=False) == "f":
                return
            if not self.pg_ctl("status", check=False):
                break
            time.sleep(0.5)
        raise OperatorError(
            f"{self.host.name}: the replay to {target} did not end promoted:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        return (self.host.read(self.log) or b"").decode(errors="replace")[-2000:]


def private_config(ctl: Controller, layout: Layout, private: str, port: int) -> str:
    """The replay's whole configuration (the restored postgresql.conf is whichever node's
    the backup copied): no address, its own socket and hba, archiving into the stanza."""
    paths = backup_paths(layout)
    push = shlex.join(
        [PGBACKREST, f"--config={paths.config}", f"--stanza={ctl.cluster.name}", "archive-push"]
    )
    settings = {
        "listen_addresses": "",
        "port": str(port),
        "unix_socket_directories": private,
        "hba_file": posixpath.join(private, "pg_hba.conf"),
        "ident_file": posixpath.join(private, "pg_ident.conf"),
        "ssl": "off",
        "hot_standby": "off",
        "wal_level": "replica",
        "wal_log_hints": "on",
        "archive_mode": "on",
        "archive_command": f'{push} "%p"',
        "password_encryption": "scram-sha-256",
    }
    return "".join(
        f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n" for name, value in settings.items()
    )


def _pgbackrest(ctl: Controller, layout: Layout) -> list[str]:
    paths = backup_paths(layout)
    return [
        "env",
        f"PGPASSFILE={paths.passfile}",
        PGBACKREST,
        f"--config={paths.config}",
        f"--stanza={ctl.cluster.name}",
    ]


def _archive_history(host: Host, layout: Layout, user: str | None, pgbackrest: list[str]) -> None:
    """The newest timeline's history file into the repository (archive-push accepts one it
    has already): replicas restoring from the repository follow that timeline."""
    pg_wal = posixpath.join(layout.pg_data, "pg_wal")
    names = host.run(["ls", "-1", pg_wal], user=user).stdout.split()
    histories = sorted(n for n in names if n.endswith(".history"))
    if histories:
        host.run(
            [*pgbackrest, "archive-push", posixpath.join(pg_wal, histories[-1])],
            user=user,
            timeout=120,
        )

"""The one place that turns actions into effects on hosts and clients.

Actions run in order; the run stops at the first failure or after a barrier action, and
the loop re-observes. Every effect is idempotent and re-checks its precondition.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import yaml

from pgha_operator.core.actions import (
    Action,
    AddEtcdMember,
    CreateDatabase,
    CreateMachine,
    CreateRole,
    DestroyMachine,
    PatchPatroniConfig,
    PromoteEtcdMember,
    Reinitialize,
    ReloadService,
    RemoveEtcdMember,
    RemovePath,
    RestartPostgres,
    RestartService,
    StartEtcdLearner,
    StartService,
    StopService,
    Switchover,
    WaitFor,
    WriteFile,
)
from pgha_operator.core.backup_actions import BACKUP_ACTIONS
from pgha_operator.core.catalog_actions import CATALOG_ACTIONS
from pgha_operator.core.errors import OperatorError, PermanentError, TemporaryError
from pgha_operator.core.render import (
    ADMIN_USER,
    APP_USER,
    POOLER_USER,
    REST_USER,
    SUPERUSER,
    Binaries,
    Secrets,
)
from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Topology
from pgha_operator.shell.backup_execute import perform_backup
from pgha_operator.shell.catalog_execute import perform_catalog
from pgha_operator.shell.clients import Clients, EtcdApi, PatroniApi, PostgresApi
from pgha_operator.shell.clients.postgres import PRIMARY_TIMEOUT
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.providers.base import Provider
from pgha_operator.shell.switchover_assist import (
    LeaseGuardSource,
    OldPrimary,
    Parties,
    assisted_switchover,
)


@dataclass(frozen=True)
class Env:
    cluster: Cluster
    topology: Topology
    provider: Provider
    binaries: Binaries
    clients: Clients
    secrets: Secrets | None = None
    check_ports: bool = True  # machines sharing this host (local) can collide with others
    # The operator's lease: an assisted switchover releases Patroni's key under its guard.
    lease: LeaseGuardSource | None = None


@dataclass
class Outcome:
    """The actions done, in order, and the error that stopped the run (None: no failure)."""

    done: list[Action] = field(default_factory=list)
    error: str | None = None
    exception: Exception | None = None


def execute(
    actions: Sequence[Action],
    env: Env,
    progress: Callable[[Action], None] | None = None,
    may_act: Callable[[], bool] | None = None,
) -> Outcome:
    """`may_act`: asked before each action (the operator still holds its leader lease)."""
    outcome = Outcome()
    for action in actions:
        if may_act is not None and not may_act():
            outcome.error = f"stopped before {action.describe}: this operator lost the lease"
            break
        if progress:
            progress(action)
        try:
            _perform(action, env)
        except (OperatorError, HostError, OSError) as exc:
            outcome.error = f"{action.describe}: {exc}"
            outcome.exception = exc
            return outcome
        outcome.done.append(action)
        if action.barrier:
            return outcome
    return outcome


def _perform(action: Action, env: Env) -> None:
    match action:
        case CreateMachine(machine=name):
            env.provider.create(env.topology.machine(name))
        case WriteFile():
            _write_file(action, env)
        case StartService(machine=machine, service=service):
            svc = env.provider.host(machine).service(service)
            if svc.state() == ServiceState.RUNNING:
                return
            if env.check_ports:
                _check_ports_free(env, machine, service)
            svc.start()
        case ReloadService(machine=machine, service=service):
            svc = env.provider.host(machine).service(service)
            if svc.state() == ServiceState.RUNNING:
                svc.reload()
            _write_files(action.then_write, env)
        case RestartService(machine=machine, service=service):
            if service == "etcd":
                _check_etcd_voters_healthy(env, machine)
            svc = env.provider.host(machine).service(service)
            svc.restart()
            _write_files(action.then_write, env)
            # The definition may be among them: its manager must not keep flagging it changed.
            svc.reread_definition()
        case CreateRole():
            _create_role(env, action)
        case CreateDatabase(name=name, owner=owner, host=host, port=port):
            _superuser(env, host, port).create_database(name, owner)
        case StopService(machine=machine, service=service):
            env.provider.host(machine).service(service).stop()
        case DestroyMachine(machine=machine):
            env.provider.destroy(machine)
        case RemovePath(machine=machine, path=path):
            env.provider.host(machine).remove(path)
        case AddEtcdMember(peer_url=peer_url):
            _etcd(env).add_member([peer_url], learner=True)
        case StartEtcdLearner(machine=machine, path=path, content=content):
            host = env.provider.host(machine)
            host.write(path, content.encode(), mode=action.mode, owner=action.owner)
            if env.check_ports:
                _check_ports_free(env, machine, "etcd")
            host.service("etcd").start()
        case PromoteEtcdMember(member_id=member_id):
            _etcd(env).promote_member(member_id)
        case RemoveEtcdMember(member_id=member_id):
            _etcd(env).remove_member(member_id)
        case PatchPatroniConfig(leader=leader, patch_json=patch_json):
            _patroni(env, leader).patch_config(json.loads(patch_json))
        case RestartPostgres(machine=machine):
            _patroni(env, machine).restart()
        case Reinitialize(machine=machine):
            _patroni(env, machine).reinitialize(force=True)
        case Switchover(leader=leader, candidate=candidate):
            _switchover(env, leader, candidate)
        case WaitFor():
            return
        case _ if isinstance(action, CATALOG_ACTIONS):
            perform_catalog(action, env.clients, env.secrets)
        case _ if isinstance(action, BACKUP_ACTIONS):
            host = env.provider.host(action.machine)
            perform_backup(action, host, env.provider.layout(action.machine), env.cluster.name)
        case _:
            raise OperatorError(f"unknown action {action!r}")


def _write_file(action: WriteFile, env: Env) -> None:
    host = env.provider.host(action.machine)
    data = action.content.encode()
    if action.path.endswith((".yml", ".yaml")):
        try:
            yaml.safe_load(action.content)  # never install a file its reader cannot parse
        except yaml.YAMLError as exc:
            raise PermanentError(f"{action.path}: not valid YAML, not written: {exc}") from exc
    checker = _checker(action.path, env.binaries)
    if checker is not None:
        # Rule 5: validate a candidate beside the live file, then rename it into place.
        candidate = action.path + ".pgha-new"
        host.write(candidate, data, mode=action.mode, owner=action.owner)
        try:
            res = host.run([*checker, candidate], check=False)
            if not res.ok and not _checker_missing(res.stdout + res.stderr):
                said = (res.stderr.strip() or res.stdout.strip())[-2000:]
                name = f"{checker[0].rsplit('/', 1)[-1]} {checker[1]}"  # haproxy -c
                raise OperatorError(f"{name} refused the new config: {said}")
        finally:
            host.remove(candidate)
    host.write(action.path, data, mode=action.mode, owner=action.owner)


def _checker(path: str, binaries: Binaries) -> tuple[str, ...] | None:
    """The command (the candidate's path goes last) that checks a config before it is used."""
    if path.endswith("haproxy.cfg"):
        return (binaries.haproxy, "-c", "-f")
    if path.endswith("keepalived.conf"):
        # keepalived >= 2.0.?: exit 0 only on a clean config (the interface, the tracked
        # script written before it, every keyword).
        return (binaries.keepalived, "--config-test", "--use-file")
    return None


def _checker_missing(output: str) -> bool:
    """A keepalived too old for --config-test: the file is used as rendered (unchecked)."""
    said = output.lower()
    return any(w in said for w in ("unrecognized option", "invalid option", "unknown option"))


def _write_files(writes: Sequence[WriteFile], env: Env) -> None:
    """The files as rendered, once their reader picked them up (plan: PICKUP_PENDING)."""
    for write in writes:
        _write_file(write, env)


def _check_etcd_voters_healthy(env: Env, machine: str) -> None:
    """Rule 2 at the moment it matters: the plan saw every voter healthy, but one may have
    died since; restarting another member then would take the quorum down."""
    # The member being restarted may be the unhealthy one: restarting it costs no quorum.
    down = [name for name in _etcd(env).unhealthy_voters() if name != machine]
    if down:
        raise TemporaryError(
            f"not restarting etcd on {machine}: voter {', '.join(down)} is not healthy "
            "(the quorum could be lost)"
        )


def service_ports(env: Env, machine: str, service: str) -> list[tuple[str, int]]:
    address = _address(env, machine)  # a leaving etcd voter is started too
    topo = env.topology
    if service == "etcd":
        return [(address, topo.etcd_client_port), (address, topo.etcd_peer_port)]
    if service == "patroni":
        # Not the PostgreSQL port: a postmaster that outlived its Patroni holds it, and the
        # restarted Patroni adopts that postmaster.
        return [(address, topo.rest_api_port)]
    if service == "haproxy":
        p = env.cluster.spec.load_balancer.ports
        return [(address, p.primary), (address, p.replicas), (address, p.stats)]
    if service == "pgbouncer":
        return [(address, env.cluster.spec.pooler.port)]
    return []


def _check_ports_free(env: Env, machine: str, service: str) -> None:
    """A stopped service whose port is bound means another program holds it: say which."""
    for address, port in service_ports(env, machine, service):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PermanentError(
                        f"{address}:{port} is already in use by another program; "
                        f"{service} on {machine} cannot start"
                    ) from exc
                raise


ADMIN_ROLE_ATTRIBUTES = ("LOGIN", "CREATEDB", "CREATEROLE")
APP_ROLE_ATTRIBUTES = ("LOGIN",)  # owns its database; nothing cluster-wide


def _create_role(env: Env, action: CreateRole) -> None:
    if env.secrets is None:
        raise OperatorError(f"no generated password for role {action.role}")
    if action.role == POOLER_USER and env.secrets.pooler_password:
        db = _superuser(env, action.host, action.port)
        db.set_up_pooler_auth(POOLER_USER, env.secrets.pooler_password)
        return
    generated = {
        ADMIN_USER: (env.secrets.admin_password, ADMIN_ROLE_ATTRIBUTES),
        APP_USER: (env.secrets.app_password, APP_ROLE_ATTRIBUTES),
    }
    if action.role not in generated:
        raise OperatorError(f"no generated password for role {action.role}")
    password, attributes = generated[action.role]
    _superuser(env, action.host, action.port).create_role(action.role, password, attributes)


def _superuser(env: Env, host: str, port: int) -> PostgresApi:
    """The superuser on one node directly (never through the load balancer, which refuses it),
    on the connection the observation just read the primary over (PRIMARY_TIMEOUT)."""
    if env.secrets is None:
        raise OperatorError("no generated superuser password")
    password = env.secrets.superuser_password
    return env.clients.postgres(host, port, SUPERUSER, password, timeout=PRIMARY_TIMEOUT)


def _etcd(env: Env) -> EtcdApi:
    """Through every member that may answer: the manifest's, and machines leaving it (while
    the manifest's are down, the leaving ones may hold the quorum that removes them)."""
    wanted = {m.name for m in env.topology.machines}
    leaving = [
        env.topology.etcd_client_url_at(f.address)
        for f in env.provider.machines()
        if f.name not in wanted and f.exists and f.address
    ]
    return env.clients.etcd([*env.topology.etcd_client_urls, *leaving])


def _patroni(env: Env, machine: str) -> PatroniApi:
    auth = (REST_USER, env.secrets.rest_password) if env.secrets else None
    return env.clients.patroni(
        f"https://{_address(env, machine)}:{env.topology.rest_api_port}", auth
    )


def _parties(env: Env, leader: str, candidate: str) -> Parties:
    layout = env.provider.layout(leader)
    spec = env.cluster.spec
    return Parties(
        leader=leader,
        candidate=candidate,
        old=OldPrimary(env.provider.host(leader), env.binaries.pg_bin_dir, layout.pg_data),
        patroni=_patroni(env, leader),
        replica=_superuser(env, _address(env, candidate), env.topology.pg_port),
        etcd=_etcd(env),
        leader_key=f"{spec.patroni.namespace.rstrip('/')}/{env.cluster.name}/leader",
    )


def _address(env: Env, machine: str) -> str:
    """A machine of the manifest, or one that is leaving it (known to the provider only)."""
    if machine in {m.name for m in env.topology.machines}:
        return env.topology.address(machine)
    for fact in env.provider.machines():
        if fact.name == machine and fact.address:
            return fact.address
    raise OperatorError(f"no address known for machine {machine}")


SWITCHOVER_WAIT_SECONDS = 60.0


def _switchover(env: Env, leader: str, candidate: str) -> None:
    """Ask Patroni (it demotes and promotes, never us), then wait until the candidate leads.
    Assisted (the default, with a lease): the operator releases the leader key as soon as
    nothing can be lost (shell/switchover_assist.py), else Patroni's own timing."""
    if env.cluster.spec.failover.switchover == "assisted" and env.lease is not None:
        assisted_switchover(_parties(env, leader, candidate), env.lease)
    else:
        _patroni(env, leader).switchover(leader, candidate)
    deadline = time.monotonic() + SWITCHOVER_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            if _patroni(env, candidate).is_primary():
                return
        except OperatorError:
            pass
        time.sleep(0.2)
    raise TemporaryError(
        f"{candidate} is not primary {SWITCHOVER_WAIT_SECONDS:.0f}s after the switchover"
    )

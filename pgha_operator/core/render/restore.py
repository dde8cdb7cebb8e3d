"""A cluster built from another's backup (spec.bootstrap.recovery): Patroni's custom
bootstrap, the source's read-only pgBackRest configuration, and the roles' passwords.

How the first primary is made (Patroni 4.1's custom bootstrap, read):
1. `bootstrap.pgha_restore.command`: `pgbackrest restore` with the node's
   `pgbackrest-source.conf` (the source's repository, the source's stanza, this node's data
   directory). pgBackRest writes the recovery settings (restore_command: archive-get from
   the source's stanza, the target, `recovery_target_action = promote`) and
   recovery.signal; `keep_existing_recovery_conf` keeps them.
2. Patroni starts PostgreSQL with this cluster's own configuration: `archive_command`
   pushes into this cluster's stanza (in its own repository) from the first segment it
   archives, the new timeline's history file and the segments after the promotion. Nothing
   in the source's repository is ever written (restore and archive-get only read).
3. Patroni waits for the end of recovery, then (post_bootstrap) sets the superuser's and
   the replication role's passwords to this cluster's, over the trust access it opened
   for its custom bootstrap, and runs `post_bootstrap`: `psql -f restore-roles.sql`, the
   other roles the operator logs in as (admin, app, the pooler's, declared login roles)
   given this cluster's passwords. Then Patroni drops the recovery settings and the trust.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Any

from pgha_operator.core.render.context import SUPERUSER, DesiredFile, RenderContext, Secrets
from pgha_operator.core.render.pgbackrest import PGBACKREST, backup_paths
from pgha_operator.core.rotation import LOGINS, ROLE_FIELD, declared_login
from pgha_operator.core.spec.recovery import (
    RecoverySpec,
    restore_target,
    source_repository,
    source_stanza,
)

SOURCE_CONFIG_NAME = "pgbackrest-source.conf"
ROLES_SQL_NAME = "restore-roles.sql"
BOOTSTRAP_METHOD = "pgha_restore"  # the key of Patroni's custom bootstrap method
SOURCE_CONFIG_MODE = 0o640  # no secret in it
ROLES_SQL_MODE = 0o600  # the passwords
# Dollar quotes around each role's statement: generated passwords are URL-safe base64.
_QUOTE = "$pgha$"


def _beside_patroni(ctx: RenderContext, machine: str, name: str) -> str:
    return posixpath.join(posixpath.dirname(ctx.layout(machine).patroni_config), name)


def source_config_path(ctx: RenderContext, machine: str) -> str:
    return _beside_patroni(ctx, machine, SOURCE_CONFIG_NAME)


def roles_sql_path(ctx: RenderContext, machine: str) -> str:
    return _beside_patroni(ctx, machine, ROLES_SQL_NAME)


def source_conf(ctx: RenderContext, machine: str, recovery: RecoverySpec) -> str:
    """The source's repository and stanza, with this node's data directory as pg1: what
    `restore` and the restored server's `archive-get` read. No retention, no archive-push:
    nothing run with this file writes into the repository."""
    layout = ctx.layout(machine)
    return "\n".join(
        [
            f"# The source of cluster {ctx.topology.cluster}'s restore (read only); "
            "written by pgha-operator.",
            "[global]",
            f"repo1-path={source_repository(recovery)}",
            f"lock-path={backup_paths(layout).lock_dir}",
            "log-level-file=off",
            "log-level-console=warn",
            "log-level-stderr=warn",
            "",
            f"[{source_stanza(recovery)}]",
            f"pg1-path={layout.pg_data}",
            f"pg1-socket-path={layout.pg_socket_dir}",
            f"pg1-port={ctx.topology.pg_port}",
            f"pg1-user={SUPERUSER}",
            "",
        ]
    )


def restore_argv(ctx: RenderContext, machine: str, recovery: RecoverySpec) -> list[str]:
    """`pgbackrest restore` of the source's backup up to the target, then promote."""
    kind, target = restore_target(recovery)
    argv = [
        PGBACKREST,
        f"--config={source_config_path(ctx, machine)}",
        f"--stanza={source_stanza(recovery)}",
        f"--type={kind}",
    ]
    if target is not None:
        argv += [f"--target={target}", "--target-action=promote"]
    return [*argv, "restore"]


def bootstrap_command(ctx: RenderContext, machine: str, recovery: RecoverySpec) -> str:
    """The data directory made (pgBackRest restores into an existing, empty one), then the
    restore. One /bin/sh -c for Patroni, which splits the command with shlex."""
    data = ctx.layout(machine).pg_data
    script = (
        f"mkdir -p {shlex.quote(data)} && chmod 0700 {shlex.quote(data)} && "
        f"exec {shlex.join(restore_argv(ctx, machine, recovery))}"
    )
    return shlex.join(["/bin/sh", "-c", script])


def post_bootstrap_command(ctx: RenderContext, machine: str) -> str:
    """Patroni appends the superuser's connection string (and names a passfile for it)."""
    psql = posixpath.join(ctx.binaries.pg_bin_dir, "psql")
    sql = shlex.quote(roles_sql_path(ctx, machine))
    script = f'exec {shlex.quote(psql)} "$1" -X -q -v ON_ERROR_STOP=1 -f {sql}'
    return shlex.join(["/bin/sh", "-c", script, "pgha-post-bootstrap"])


def bootstrap_section(ctx: RenderContext, machine: str) -> dict[str, Any]:
    """What patroni.yml's `bootstrap` adds for a restore ({} without spec.bootstrap.recovery)."""
    recovery = ctx.cluster.spec.bootstrap.recovery
    if recovery is None:
        return {}
    return {
        "method": BOOTSTRAP_METHOD,
        BOOTSTRAP_METHOD: {
            "command": bootstrap_command(ctx, machine, recovery),
            "no_params": True,
            "keep_existing_recovery_conf": True,
        },
        "post_bootstrap": post_bootstrap_command(ctx, machine),
    }


def local_connection(ctx: RenderContext) -> dict[str, Any]:
    """A restored cluster's Patroni logs in locally over the Unix socket. During the custom
    bootstrap it has only the trust access it opens itself (`local`, and `host` for the
    node's address): its TCP connections to the node's address come from 127.0.0.1 and
    would match neither (found by the integration test). libpq uses no TLS on a socket."""
    if ctx.cluster.spec.bootstrap.recovery is None:
        return {}
    return {"use_unix_socket": True}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def role_password_statement(role: str, password: str) -> str:
    """ALTER ROLE when the restored catalog has the role (the pooler's exists only where
    the source ran one); the operator creates missing ones with their passwords."""
    if _QUOTE in role or _QUOTE in password:
        raise ValueError(f"role {role!r}: its name or password holds {_QUOTE}")
    return (
        f"DO {_QUOTE} BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(role)}) "
        f"THEN EXECUTE format('ALTER ROLE %I PASSWORD %L', {_literal(role)}, "
        f"{_literal(password)}); END IF; END {_QUOTE};"
    )


def role_passwords(secrets: Secrets) -> list[tuple[str, str]]:
    """(role, password) of every database login whose password this cluster generated:
    the operator's (core/rotation.py's LOGINS) and the declared login roles."""
    declared = [declared_login(name) for name, _ in secrets.roles]
    pairs = []
    for login in (*LOGINS, *declared):
        if not login.database:
            continue
        if login.field.startswith(ROLE_FIELD):
            password = secrets.role_password(login.name)
        else:
            password = getattr(secrets, login.field)
        if password:
            pairs.append((login.name, password))
    return pairs


def roles_sql(cluster: str, secrets: Secrets) -> str:
    """The restored roles given this cluster's passwords; never logged (log_statement off
    for the session), the superuser's last (the others are set over its login). Also run
    after an in-place restore (shell/restore.py)."""
    pairs = sorted(role_passwords(secrets), key=lambda pair: pair[0] == SUPERUSER)
    lines = [
        f"-- cluster {cluster}: its passwords on the restored roles; written by pgha-operator.",
        "SET log_statement = 'none';",
        "SET log_min_duration_statement = -1;",
        *(role_password_statement(role, password) for role, password in pairs),
    ]
    return "\n".join(lines) + "\n"


def restore_files(ctx: RenderContext, machine: str) -> list[DesiredFile]:
    """A node's source configuration and roles file (none without spec.bootstrap.recovery)."""
    recovery = ctx.cluster.spec.bootstrap.recovery
    if recovery is None:
        return []
    return [
        DesiredFile(
            machine=machine,
            path=source_config_path(ctx, machine),
            content=source_conf(ctx, machine, recovery),
            mode=SOURCE_CONFIG_MODE,
            owner=ctx.service_user,
            service=None,
        ),
        DesiredFile(
            machine=machine,
            path=roles_sql_path(ctx, machine),
            content=roles_sql(ctx.topology.cluster, ctx.secrets),
            mode=ROLES_SQL_MODE,
            owner=ctx.service_user,
            service=None,
        ),
    ]

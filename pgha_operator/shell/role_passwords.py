"""The operator's half of a password rotation: set the rotated roles' new passwords on the
primary (ALTER ROLE), then let the cycle render the configs that carry them.

Called by every acting cycle while rotation.yaml exists, so a rotation interrupted anywhere
(the command killed, the machine rebooted) is finished by the next `apply` or `run`. Each
step is idempotent: setting a password a role already has changes nothing that matters.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.render import SUPERUSER, Secrets
from pgha_operator.core.rotation import alter_order, password_of
from pgha_operator.shell.clients import Clients, ComponentError, PostgresApi
from pgha_operator.shell.state import StateDir

log = structlog.get_logger("pgha-operator")

LOGIN_TIMEOUT = 2.0  # seconds to connect to the primary


def settle_rotation(
    state: StateDir,
    observed: Observed,
    secrets: Secrets,
    previous: Mapping[str, str],
    clients: Clients,
) -> list[str]:
    """ALTER ROLE every pending role to its password in `secrets`, superuser last, then drop
    rotation.yaml. Returns the roles set; [] when no primary answers (tried next cycle).
    A role that does not exist yet is skipped: it will be created with the new password."""
    leader = observed.patroni.leader
    if leader is None or leader.state != "running":
        return []
    logins = alter_order(previous)
    db = _superuser_login(clients, leader.host, leader.port, secrets, previous)
    if db is None:
        return []
    try:
        existing = db.existing_roles([x.name for x in logins])
        done = []
        for login in logins:
            if login.name in existing:
                db.set_password(login.name, password_of(secrets, login.field))
                done.append(login.name)
    except ComponentError as exc:
        log.warning("rotation: ALTER ROLE failed, retried next cycle", error=str(exc))
        return []
    state.end_rotation()
    log.info("rotation: new passwords set", roles=done)
    return done


def _superuser_login(
    clients: Clients, host: str, port: int, secrets: Secrets, previous: Mapping[str, str]
) -> PostgresApi | None:
    """The superuser's login with whichever password it has now: the old one until its own
    ALTER ROLE ran, the new one after (a crash may fall between that and the file's removal)."""
    candidates = dict.fromkeys(
        [previous.get("superuser_password", secrets.superuser_password), secrets.superuser_password]
    )
    for password in candidates:
        db = clients.postgres(host, port, SUPERUSER, password, timeout=LOGIN_TIMEOUT)
        try:
            db.existing_roles([SUPERUSER])
        except ComponentError:
            continue
        return db
    log.warning("rotation: the superuser cannot log in on the primary, retried next cycle")
    return None

"""The cluster's generated passwords: `secrets.yaml` (0600) and the copy kept beside it.
The operator's logins are top-level fields; declared login roles (spec.postgres.roles) sit
under `roles:` (name -> password), generated when a role is first declared.

Passwords are generated once, when a cluster is created, and never again by themselves: a
new password reaches patroni.yml but not PostgreSQL's roles (no ALTER ROLE), so replication
and Patroni's logins would break. Once a cluster exists, a missing, damaged or incomplete
file is refused (fail closed) and the error says how to restore the copy. Deliberate
re-keying is `pgha-operator rotate passwords` (shell/rotation.py), which saves new ones here.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Iterable
from pathlib import Path

import yaml

from pgha_operator.core.render import Secrets
from pgha_operator.shell.state.atomic import write_atomic
from pgha_operator.shell.state.errors import StateError

FILE_NAME = "secrets.yaml"
BACKUP_NAME = "secrets.yaml.bak"
FIELDS = (
    "superuser_password",
    "replication_password",
    "admin_password",
    "rest_password",
    "app_password",
    "stats_password",
    "pooler_password",
)
# Passwords a cluster's daemons and roles already use once it exists: never generated anew.
# The others (added later) are set by the operator itself, so a missing one is made.
IN_USE_FIELDS = FIELDS[:4]
MODE = 0o600


ROLES_KEY = "roles"


def read_fields(path: Path) -> dict[str, str] | None:
    """The passwords the file holds (possibly incomplete); None when there is no file.
    Raises StateError when it cannot be read or parsed."""
    loaded = _load(path)
    if loaded is None:
        return None
    return {k: str(v) for k, v in loaded.items() if k in FIELDS and v not in (None, "")}


def read_role_passwords(path: Path) -> dict[str, str]:
    """The declared roles' passwords the file holds ({} when none or no file)."""
    loaded = _load(path)
    roles = (loaded or {}).get(ROLES_KEY) or {}
    if not isinstance(roles, dict):
        raise StateError(path, f"is damaged ({ROLES_KEY} is not a mapping)", remedy(path))
    return {str(k): str(v) for k, v in roles.items() if v not in (None, "")}


def _load(path: Path) -> dict[str, object] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(path, f"cannot be read ({exc.strerror})", remedy(path)) from None
    try:
        loaded = yaml.safe_load(raw.decode())
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise StateError(path, f"is damaged (not YAML: {reason})", remedy(path)) from None
    if loaded is None:
        raise StateError(path, "is empty", remedy(path))
    if not isinstance(loaded, dict):
        raise StateError(path, "is damaged (not a mapping of passwords)", remedy(path))
    return loaded


def read_secrets(folder: Path) -> Secrets | None:
    """For commands that only read: the passwords, None when none were generated yet."""
    path = folder / FILE_NAME
    data = read_fields(path)
    if data is None:
        return None
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise StateError(path, f"has no {', '.join(missing)}", remedy(path))
    return Secrets(**data).with_role_passwords(read_role_passwords(path))


def load_or_create(folder: Path, cluster_exists: bool, roles: Iterable[str] = ()) -> Secrets:
    """For the operator that acts: generate the passwords of a new cluster; never re-key
    one that exists. `roles`: declared login roles, each given a password the first time.
    Writes the file (and its copy) only when something changes."""
    path = folder / FILE_NAME
    data = read_fields(path)
    role_passwords = read_role_passwords(path) if data is not None else {}
    new_roles = [r for r in roles if r not in role_passwords]
    missing = [f for f in FIELDS if f not in (data or {})]
    lost = [f for f in missing if f in IN_USE_FIELDS]
    if lost and cluster_exists:
        problem = "is missing" if data is None else f"has no {', '.join(lost)}"
        raise StateError(
            path,
            f"{problem}, but {folder} holds a cluster whose roles use the old passwords; "
            "new ones would lock Patroni and replication out",
            remedy(path),
        )
    data = dict(data or {})
    for field in missing:
        data[field] = pysecrets.token_urlsafe(24)
    for role in new_roles:
        role_passwords[role] = pysecrets.token_urlsafe(24)
    secrets = Secrets(**{f: data[f] for f in FIELDS}).with_role_passwords(role_passwords)
    if missing or new_roles:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _text(secrets), MODE)
    backup = folder / BACKUP_NAME
    if _read_quietly(backup) != _read_quietly(path):
        write_atomic(backup, path.read_bytes(), MODE)
    if path.stat().st_mode & 0o777 != MODE:
        path.chmod(MODE)
    return secrets


def save(folder: Path, secrets: Secrets) -> None:
    """Replace the passwords (a rotation): the file first, then its copy, both 0600. A crash
    between the two leaves the copy behind; the next load_or_create brings it in step."""
    text = _text(secrets)
    write_atomic(folder / FILE_NAME, text, MODE)
    write_atomic(folder / BACKUP_NAME, text, MODE)


def _text(secrets: Secrets) -> bytes:
    data: dict[str, object] = {f: getattr(secrets, f) for f in FIELDS}
    if secrets.roles:
        data[ROLES_KEY] = dict(secrets.roles)
    return yaml.safe_dump(data, sort_keys=True).encode()


def _read_quietly(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def remedy(path: Path) -> str:
    """What to do, for every secrets error: restore the kept copy if it is good."""
    backup = path.with_name(BACKUP_NAME)
    try:
        good = backup.exists() and _complete(read_fields(backup))
    except StateError:
        good = False
    if good:
        return (
            f"The operator keeps a copy: restore it with `cp -p {backup} {path}` "
            "(README, section Secrets)"
        )
    return (
        f"Restore {path.name} from your own backup; the passwords are also in each "
        "PostgreSQL machine's patroni.yml (README, section Secrets). If no cluster was ever "
        "created from this state dir, delete the file to generate new ones"
    )


def _complete(data: dict[str, str] | None) -> bool:
    return data is not None and all(f in data for f in FIELDS)

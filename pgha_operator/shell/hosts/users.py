"""Users and groups of this computer, for the local host and its supervisor."""

from __future__ import annotations

import grp
import os
import pwd

from pgha_operator.shell.hosts.base import HostError

TAIL_LINES = 20


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def passwd(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise HostError(f"no such user: {user!r}") from None


def owner_ids(owner: str | None) -> tuple[int, int]:
    """uid/gid for "user" (its primary group) or "user:group"; None is the operator itself."""
    if owner is None:
        return os.geteuid(), os.getegid()
    user, _, group = owner.partition(":")
    pw = passwd(user)
    if not group:
        return pw.pw_uid, pw.pw_gid
    try:
        return pw.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise HostError(f"no such group: {group!r}") from None


def setpriv(pw: pwd.struct_passwd) -> list[str]:
    """The argv prefix that runs a command as that user."""
    # setpriv execs (no extra process), so the pid we record is the daemon's own pid.
    return [
        "setpriv",
        f"--reuid={pw.pw_uid}",
        f"--regid={pw.pw_gid}",
        "--init-groups",
        "--",
    ]


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])

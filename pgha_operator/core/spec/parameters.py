"""The rules for spec.postgres.parameters: names PostgreSQL knows, values postgresql.conf can
hold, and the settings the operator or Patroni own.

Patroni writes each parameter as one `name = 'value'` line of postgresql.conf. A name that is
not a PostgreSQL name, or a value with a line break, writes lines of the manifest's choosing
(a key `"zz.x = 'y'\\nhba_file"` became a second line `hba_file = ...`, past the managed list).
Each refusal is a PydanticCustomError whose type wording.py turns into a reason.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from pgha_operator.core.spec.pg15_settings import PG15_SETTINGS
from pgha_operator.core.spec.problems import show_value

ParameterValue = str | int | float | bool

# PostgreSQL's own rule for a setting's name (guc.c): letters, digits and `_`, not starting
# with a digit; a custom (extension) setting is qualified once, `namespace.name`.
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")

# postgresql.conf settings the operator or Patroni own; a manifest must not set them.
MANAGED_PARAMETERS: dict[str, str] = {
    "port": "set spec.postgres.port instead",
    "listen_addresses": "the operator sets it to the machine's address",
    "synchronous_standby_names": "Patroni manages it; set spec.postgres.synchronous instead",
    "hot_standby": "Patroni needs it on",
    "data_directory": "the operator chooses the data directory",
    "config_file": "Patroni writes the configuration files",
    "hba_file": "set spec.postgres.hba instead",
    "ident_file": "Patroni writes the configuration files",
    # WAL archiving belongs to spec.backup (pgBackRest): another archiver would leave the
    # repository's WAL stream with gaps, and Patroni writes restore_command itself.
    "archive_mode": "set spec.backup instead (it turns WAL archiving on)",
    "archive_command": "set spec.backup instead (the operator archives with pgBackRest)",
    "archive_library": "set spec.backup instead (the operator archives with pgBackRest)",
    "restore_command": "set spec.backup instead (replicas fetch WAL with pgBackRest)",
}
TLS_REASON = (
    "the operator manages TLS (ssl and every ssl_* setting) with the cluster's certificates"
)

# Settings a server's postgresql.conf may hold that describe-config leaves out: PostgreSQL
# marks them "not in the sample file" (the others it leaves out are developer options such as
# zero_damaged_pages, read-only values and per-transaction states, all refused here).
NOT_IN_SAMPLE_SETTINGS = frozenset({"application_name"})

# PostgreSQL matches setting names case-insensitively: compare in lowercase, show its spelling.
_SETTINGS_BY_LOWERCASE = {name.lower(): name for name in PG15_SETTINGS | NOT_IN_SAMPLE_SETTINGS}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def managed_reason(name: str) -> str | None:
    """Why a manifest may not set `name`, or None when it may."""
    lower = name.lower()
    if lower in MANAGED_PARAMETERS:
        return MANAGED_PARAMETERS[lower]
    if lower == "ssl" or lower.startswith("ssl_"):
        return TLS_REASON
    return None


def check_name(name: str) -> str:
    """A parameter's name, or the refusal: not a PostgreSQL name, managed, or unknown."""
    if not PARAMETER_NAME.fullmatch(name):
        raise PydanticCustomError(
            "parameter_name",
            "is not a PostgreSQL parameter name: write `name` or `namespace.name` with "
            "letters, digits and '_' (Patroni writes it into postgresql.conf as it is)",
        )
    why = managed_reason(name)
    if why is not None:
        raise PydanticCustomError("managed_parameter", "cannot be set here: {why}", {"why": why})
    if "." not in name and name.lower() not in _SETTINGS_BY_LOWERCASE:
        raise PydanticCustomError(
            "unknown_parameter",
            "is not a PostgreSQL 15 setting{hint}",
            {"hint": _did_you_mean(name)},
        )
    return name


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), _SETTINGS_BY_LOWERCASE, n=1, cutoff=0.75)
    if close:
        return f"; did you mean {_SETTINGS_BY_LOWERCASE[close[0]]!r}?"
    return " (an extension's setting is written namespace.name, e.g. pg_stat_statements.max)"


def check_scalar(value: Any) -> Any:
    """Before the union: one reason for a list or mapping, not one per member of the union."""
    if not isinstance(value, str | int | float | bool):
        raise PydanticCustomError(
            "parameter_value",
            "expected a number, text or true/false, got {got}",
            {"got": show_value(value)},
        )
    return value


def check_value(value: ParameterValue) -> ParameterValue:
    """Text values must fit on the one quoted line Patroni writes."""
    if isinstance(value, str):
        found = _CONTROL.search(value)
        if found:
            raise PydanticCustomError(
                "parameter_value",
                "contains the control character {char} at position {at}: Patroni writes "
                "each setting as one quoted line of postgresql.conf; a line break there "
                "leaves an unterminated string, and PostgreSQL refuses to start on every "
                "node at its next restart",
                {"char": repr(found.group()), "at": found.start()},
            )
    return value


ParameterName = Annotated[str, AfterValidator(check_name)]
CheckedValue = Annotated[ParameterValue, BeforeValidator(check_scalar), AfterValidator(check_value)]


def case_duplicates(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """(first, second) spellings of one setting: PostgreSQL would keep only one of them."""
    seen: dict[str, str] = {}
    found = []
    for name in parameters:
        first = seen.setdefault(str(name).lower(), str(name))
        if first != name:
            found.append((first, str(name)))
    return found

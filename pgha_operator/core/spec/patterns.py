"""The text patterns manifest fields must match, each with the words a refusal uses."""

from __future__ import annotations

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$"
DURATION_PATTERN = r"^[0-9]+(ms|s)$"
NAMESPACE_PATTERN = r"^/([A-Za-z0-9_.-]+/)*$"
HBA_TOKEN_PATTERN = r"^[^\s#]+$"

# pydantic names only the regex; a DBA needs to hear what the field should look like.
PATTERN_REASONS = {
    NAME_PATTERN: "is not a valid name: lowercase letters, digits and '-', starting with a "
    "letter, not ending with '-', at most 32 characters",
    DURATION_PATTERN: "is not a duration: write a whole number with ms or s, e.g. 500ms or 3s",
    NAMESPACE_PATTERN: "is not a valid namespace: write it like /service/ (a leading and a "
    "trailing '/')",
    HBA_TOKEN_PATTERN: "must be one word: no spaces or '#' (separate several with commas)",
}

# Roles and databases: PostgreSQL identifiers that need no quoting (psycopg quotes them
# anyway); lowercase, so what the manifest says is what pg_roles shows.
SQL_NAME_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
LOCALE_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
PATTERN_REASONS[SQL_NAME_PATTERN] = (
    "is not a valid name: lowercase letters, digits and '_', starting with a letter or '_', "
    "at most 63 characters"
)
PATTERN_REASONS[LOCALE_PATTERN] = "is not a locale name (e.g. C.UTF-8 or en_US.UTF-8)"

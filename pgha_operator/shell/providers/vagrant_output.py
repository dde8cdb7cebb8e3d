"""What the operator reads from Vagrant's own output: `vagrant ssh-config` and
`vagrant status --machine-readable`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SshConfig:
    host: str
    hostname: str
    user: str
    port: int
    identity_file: str


def parse_ssh_config(text: str) -> dict[str, SshConfig]:
    """`vagrant ssh-config [NAME]` output -> per Host block; only what the operator needs.
    Vagrant quotes paths with spaces ("IdentityFile "/a b/private_key"")."""
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key = key.lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "host":
            current = blocks.setdefault(value, {})
            continue
        if current is not None and key not in current:  # the first IdentityFile wins
            current[key] = value
    out = {}
    for host, fields in blocks.items():
        missing = [k for k in ("hostname", "user", "port", "identityfile") if k not in fields]
        if missing:
            raise ValueError(f"ssh-config for {host} lacks {', '.join(missing)}")
        out[host] = SshConfig(
            host=host,
            hostname=fields["hostname"],
            user=fields["user"],
            port=int(fields["port"]),
            identity_file=fields["identityfile"],
        )
    return out


def parse_status(text: str) -> dict[str, str]:
    """`vagrant status --machine-readable` -> machine name -> state ("running",
    "poweroff", "not_created", ...). Lines: timestamp,target,type,data..."""
    states = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) >= 4 and parts[2] == "state" and parts[1]:
            states[parts[1]] = parts[3]
    return states

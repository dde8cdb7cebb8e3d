"""Generated passwords: created on first use in the state dir (mode 0600), reused after.

They never appear in manifests or logs; render receives them as a value.
"""

from __future__ import annotations

import os
import secrets as pysecrets
from pathlib import Path

import yaml

from pgha_operator.core.render import Secrets

FILE_NAME = "secrets.yaml"
FIELDS = ("superuser_password", "replication_password", "admin_password", "rest_password")


def load_or_create(state_dir: Path) -> Secrets:
    path = state_dir / FILE_NAME
    data: dict[str, str] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: not a mapping; move it away to regenerate secrets")
        data = {k: str(v) for k, v in loaded.items() if k in FIELDS}
    missing = [f for f in FIELDS if not data.get(f)]
    if missing:
        for f in missing:
            data[f] = pysecrets.token_urlsafe(24)
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh, sort_keys=True)
        os.replace(tmp, path)
    os.chmod(path, 0o600)
    return Secrets(**{f: data[f] for f in FIELDS})

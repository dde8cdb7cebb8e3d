"""`state export` / `state import`: what a standby operator on another host needs from the
state dir of the operator that made the cluster.

The archive (a gzip'd tar, mode 0600: it holds every password and the CA's private key)
carries the secrets, the certificates and the CA (`tls/`), the last-applied manifest, the
cluster id and the ssh provider's host records and keys, plus `pgha-export.json` naming the cluster.
Never the local machines (`machines/`, `vagrant/`): those live on the exporting host.

An imported state dir is marked (`imported.json`): its operator acts only while it holds
the leader lease in the cluster's etcd, so it never bootstraps a cluster (core/leadership).
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time
from pathlib import Path
from typing import Any

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.state import identity, last_applied, pki, rotation_store, secrets_store

HEADER = "pgha-export.json"
IMPORTED_MARK = "imported.json"
FILES = (
    secrets_store.FILE_NAME,
    secrets_store.BACKUP_NAME,
    rotation_store.FILE_NAME,
    last_applied.FILE_NAME,
    identity.FILE_NAME,  # ssh hosts accept only operators of the cluster's own identity
    "known_hosts",
)
DIRS = (pki.DIR_NAME, "hosts", "ssh")


def exported_cluster(state: Path) -> str:
    """The cluster recorded in the state dir's last-applied manifest (the export's name)."""
    loaded = last_applied.read(state, None)
    if loaded is None:
        raise PermanentError(f"{state}: no {last_applied.FILE_NAME}: apply the cluster first")
    return loaded.cluster.name


def export_state(state: Path, out: Path) -> tuple[str, list[str]]:
    """Write the archive to `out` (0600, replaced atomically); the cluster and the members."""
    cluster = exported_cluster(state)
    if not (state / secrets_store.FILE_NAME).exists() or not (state / pki.DIR_NAME).is_dir():
        raise PermanentError(f"{state}: no secrets or tls/ yet: apply the cluster first")
    members = [n for n in FILES if (state / n).is_file()]
    members += [d for d in DIRS if (state / d).is_dir()]
    header = {"cluster": cluster, "from": socket.gethostname(), "exportedAt": int(time.time())}
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        _add_bytes(tar, HEADER, json.dumps(header, indent=2).encode())
        for name in members:
            tar.add(state / name, arcname=name, filter=_owner_free)
    os.replace(tmp, out)
    return cluster, members


def import_state(archive: Path, state: Path) -> str:
    """Unpack into `state` (files 0600, folders 0700) and mark it imported; the cluster.
    Refuses an archive that is not an export, and a state dir of another cluster."""
    with tarfile.open(archive, mode="r:gz") as tar:
        header = _header(tar, archive)
        cluster = str(header["cluster"])
        members = tar.getmembers()
        for m in members:
            _check_member(m, archive)
        _refuse_other_cluster(state, cluster)
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        for m in members:
            if m.name == HEADER:
                continue
            target = state / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            data = tar.extractfile(m)
            assert data is not None  # a regular file (checked)
            _write_private(target, data.read())
    mark = {"cluster": cluster, "from": header.get("from"), "importedAt": int(time.time())}
    _write_private(state / IMPORTED_MARK, json.dumps(mark, indent=2).encode())
    return cluster


def archive_cluster(archive: Path) -> str:
    """The cluster an export archive belongs to (read before choosing the state dir)."""
    with tarfile.open(archive, mode="r:gz") as tar:
        return str(_header(tar, archive)["cluster"])


def _header(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        raw = tar.extractfile(HEADER)
        header = json.loads(raw.read()) if raw else None
    except (KeyError, ValueError):
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("cluster"), str):
        raise PermanentError(f"{archive}: not a pgha-operator state export (no {HEADER})")
    return header


def _check_member(m: tarfile.TarInfo, archive: Path) -> None:
    """Only the names an export writes, as plain files and folders: nothing outside the
    state dir, no links."""
    top = m.name.split("/", 1)[0]
    allowed = m.name == HEADER or m.name in FILES or top in DIRS
    bad_path = m.name.startswith("/") or ".." in m.name.split("/")
    if not allowed or bad_path or not (m.isfile() or m.isdir()):
        raise PermanentError(f"{archive}: unexpected member {m.name!r}; nothing was imported")


def _refuse_other_cluster(state: Path, cluster: str) -> None:
    try:
        here = exported_cluster(state)
    except PermanentError:
        here = None  # nothing recorded yet: a fresh state dir
    if here is not None and here != cluster:
        raise PermanentError(
            f"{state} holds cluster {here!r}, the archive cluster {cluster!r}; "
            "nothing was imported (choose another --state-dir)"
        )


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _owner_free(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def imported(state: Path) -> bool:
    return (state / IMPORTED_MARK).exists()

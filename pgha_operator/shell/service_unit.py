"""`install-service` / `uninstall-service`: the operator's systemd unit written, enabled and
started (or stopped, disabled and removed) with systemctl. The unit's text is
core/service_unit.py's. Neither command touches a cluster: the unit has KillMode=process,
so stopping the operator stops the operator alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.service_unit import UnitSettings, render_unit
from pgha_operator.shell.state.atomic import write_atomic

UNIT_DIR = Path("/etc/systemd/system")
SYSTEMCTL_TIMEOUT = 120.0


def venv_binary() -> str:
    """The pgha-operator command of the venv this process runs from."""
    binary = Path(sys.prefix) / "bin" / "pgha-operator"
    if not os.access(binary, os.X_OK):
        raise PermanentError(
            f"{binary} not found: install-service runs from the venv the service will use "
            "(e.g. .venv/bin/pgha-operator install-service after make setup)"
        )
    return str(binary)


def systemd_running() -> bool:
    """sd_booted(3): PID 1 is systemd when /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir()


def verify(text: str, unit_name: str) -> None:
    """`systemd-analyze verify` on the unit before it is installed (when the tool exists)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / unit_name
        path.write_text(text)
        res = subprocess.run(
            [tool, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
    if res.returncode != 0:
        raise PermanentError(f"the unit does not verify: {res.stderr.strip() or res.stdout}")


def systemctl(*args: str) -> None:
    res = subprocess.run(
        ["systemctl", *args],
        capture_output=True,
        text=True,
        timeout=SYSTEMCTL_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise PermanentError(f"systemctl {' '.join(args)} failed: {res.stderr.strip()}")


def _require_systemd(written: Path | None) -> None:
    if systemd_running():
        return
    done = f"{written} was written, but " if written else ""
    raise PermanentError(
        f"{done}systemd is not running on this host (no /run/systemd/system); "
        "`install-service --print` shows the unit without installing it"
    )


def install(
    settings: UnitSettings, unit_name: str, unit_dir: Path = UNIT_DIR, start: bool = True
) -> Path:
    """Write the unit, make the manifest and state directories, enable (and start) it."""
    text = render_unit(settings)
    verify(text, unit_name)
    for folder in (Path(settings.manifests), Path(settings.state_root)):
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = unit_dir / unit_name
    unit_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode(), mode=0o644)
    _require_systemd(path)
    systemctl("daemon-reload")
    systemctl("enable", *(["--now"] if start else []), unit_name)
    return path


def uninstall(unit_name: str, unit_dir: Path = UNIT_DIR) -> Path | None:
    """Stop and disable the operator (its clusters keep running), remove the unit file."""
    path = unit_dir / unit_name
    if not path.exists():
        return None
    _require_systemd(None)
    systemctl("disable", "--now", unit_name)
    path.unlink()
    systemctl("daemon-reload")
    return path

"""Checks of #12 on a running local cluster: Patroni's REST API (https only, unsafe endpoints
behind basic auth, patronictl through its `ctl` section), HAProxy's verified TLS checks, its
stats page behind basic auth, and every HAProxy process running as haproxy.

Shared by the module-scoped clusters of the integration tests (see test_cluster.py)."""

from __future__ import annotations

import pwd
import socket
import subprocess
import time
from pathlib import Path

import requests

from pgha_operator.core.render import Secrets
from pgha_operator.core.render.haproxy import STATS_USER
from pgha_operator.shell.state import StateDir, pki
from tests.integration.cluster_helpers import service_pid, wait_for

PATRONICTL = "/opt/pgha-operator/patroni/bin/patronictl"
HAPROXY = "/usr/sbin/haproxy"


def ca_file(state: Path) -> str:
    return pki.client_files(state).ca


def secrets(state: Path) -> Secrets:
    found = StateDir(state).secrets()
    assert found is not None, f"no secrets in {state}"
    return found


def rest_password(state: Path) -> str:
    return secrets(state).rest_password


def stats_password(state: Path) -> str:
    return secrets(state).stats_password


def check_rest_api(state: Path, address: str, port: int = 8008) -> None:
    """https with a certificate the cluster's CA signed, for this address; plain http gets
    no answer; POST /switchover needs the password (401 without it or with a wrong one)."""
    base = f"https://{address}:{port}"
    ca = ca_file(state)
    assert requests.get(f"{base}/patroni", timeout=5, verify=ca).status_code == 200
    try:
        plain = requests.get(f"http://{address}:{port}/patroni", timeout=5)
    except requests.ConnectionError:
        pass  # the TLS server drops a request that is not a handshake
    else:
        raise AssertionError(f"plain http answered {plain.status_code}: {plain.text[:200]}")
    for auth in (None, ("patroni", "wrong")):
        resp = requests.post(f"{base}/switchover", json={}, auth=auth, timeout=5, verify=ca)
        assert resp.status_code == 401, (auth, resp.status_code, resp.text)
    for path in ("restart", "reinitialize", "failover"):
        resp = requests.post(f"{base}/{path}", json={}, timeout=5, verify=ca)
        assert resp.status_code == 401, (path, resp.status_code, resp.text)
    resp = requests.patch(f"{base}/config", json={}, timeout=5, verify=ca)
    assert resp.status_code == 401, resp.text
    # With the password a harmless unsafe call goes through (POST /reload: 202 or 200).
    ok = requests.post(f"{base}/reload", auth=("patroni", rest_password(state)), verify=ca)
    assert ok.status_code in (200, 202), ok.text


def patronictl(state: Path, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """patronictl as the seed lab's users run it on a node: `-c <patroni.yml>`, as postgres."""
    config = state / "machines" / node / "etc" / "patroni" / "patroni.yml"
    argv = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    argv += [PATRONICTL, "-c", str(config), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")


def check_stats_page(state: Path, address: str, port: int) -> None:
    url = f"http://{address}:{port}/;csv"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, auth=(STATS_USER, "wrong"), timeout=5).status_code == 401
    page = requests.get(url, auth=(STATS_USER, stats_password(state)), timeout=5)
    assert page.status_code == 200 and "primary,BACKEND" in page.text


def process_uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid (the `Uid:` line of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:])
    raise AssertionError(f"no Uid line for {pid}")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def haproxy_processes(state: Path, lb: str) -> list[int]:
    """The master (the supervisor's pid file) and its workers."""
    master = service_pid(state, lb, "haproxy")
    assert master is not None, "HAProxy is not running"
    workers = children(master)
    assert workers, "the master has no worker"
    return [master, *workers]


def check_haproxy_not_root(state: Path, lb: str) -> list[int]:
    haproxy = pwd.getpwnam("haproxy").pw_uid
    pids = haproxy_processes(state, lb)
    for pid in pids:
        assert process_uids(pid) == (haproxy,) * 4, (pid, process_uids(pid))
    return pids


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def probe_haproxy(tmp: Path, state: Path, node: str, address: str, check_name: str) -> str:
    """A throwaway HAProxy whose one server checks `node`'s REST API as the cluster's does,
    with `check_name` as SNI and expected name: the server's state after a few checks."""
    ca = ca_file(state)
    sock = tmp / f"probe-{check_name}.sock"
    cfg = tmp / f"probe-{check_name}.cfg"
    cfg.write_text(
        f"""global
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout check 1s
    timeout client 5s
    timeout server 5s
backend probe
    option httpchk
    http-check send meth GET uri /patroni
    http-check expect status 200
    default-server inter 200ms rise 1 fall 1 check-ssl verify required ca-file {ca}
    server {node} {address}:5432 check port 8008 check-sni {check_name} verifyhost {check_name}
"""
    )
    log = tmp / f"probe-{check_name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(cfg)], stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_for("the probe's stats socket", sock.exists, timeout=10)
        time.sleep(1.5)  # several checks
        return show_servers_state(str(sock))
    finally:
        proc.terminate()
        proc.wait(10)


def show_servers_state(sock: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = [line.split(",") for line in data.decode().splitlines() if line.startswith("probe,")]
    (server,) = [r for r in rows if r[1] not in ("FRONTEND", "BACKEND")]
    header = data.decode().splitlines()[0].lstrip("# ").split(",")
    row = dict(zip(header, server, strict=False))
    return f"{row['status']} {row['check_status']} {row.get('last_chk', '')}"

"""`run --listen` on an address that is not loopback: HTTPS with the operator's own
certificate, and the token on every path but /healthz and /readyz.

This machine allows only loopback addresses, so the test makes a network namespace of its
own with 10.213.0.1 on its `lo` (a non-loopback address there), serves the endpoint in it
exactly as `run` builds it (status_http.open_endpoint), asks it from inside the namespace,
and removes everything after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
ADDRESS = "10.213.0.1"
PORT = 8443

SERVER = f"""
import sys, time
from pathlib import Path
from pgha_operator.shell.status_http import Snapshot, open_endpoint
snap = Snapshot({{"cluster": "netns", "phase": "Converged"}}, time.monotonic())
server = open_endpoint("{ADDRESS}:{PORT}", Path(sys.argv[1]), lambda: snap)
server.start()
print(server.url, flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""

CLIENT = f"""
import json, sys, requests
cert, token = sys.argv[1], sys.argv[2]
base = "https://{ADDRESS}:{PORT}"
def code(path, **kw):
    try:
        return requests.get(base + path, verify=cert, timeout=5, **kw).status_code
    except requests.RequestException as exc:
        return type(exc).__name__
bearer = {{"Authorization": "Bearer " + token}}
print(json.dumps({{
    "status": code("/status"),
    "page": code("/"),
    "status_wrong_token": code("/status", headers={{"Authorization": "Bearer x"}}),
    "status_token": code("/status", headers=bearer),
    "page_basic": code("/", auth=("me", token)),
    "healthz": code("/healthz"),
    "readyz": code("/readyz"),
}}))
try:
    requests.get("http://{ADDRESS}:{PORT}/healthz", timeout=5)
    print("plain http answered")
except requests.RequestException:
    print("plain http refused")
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"pgha-page-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_off_loopback_the_endpoint_needs_tls_and_the_token(netns: str, tmp_path: Path) -> None:
    opdir = tmp_path / "operator"
    in_ns = ["ip", "netns", "exec", netns, sys.executable]
    server = subprocess.Popen(
        [*in_ns, "-c", SERVER, str(opdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == f"https://{ADDRESS}:{PORT}"
        token = (opdir / "token").read_text().strip()
        res = subprocess.run(
            [*in_ns, "-c", CLIENT, str(opdir / "endpoint.crt"), token],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        )
        codes_line, plain = res.stdout.splitlines()
        codes = json.loads(codes_line)
        assert codes == {
            "status": 401,
            "page": 401,
            "status_wrong_token": 401,
            "status_token": 200,
            "page_basic": 200,
            "healthz": 200,
            "readyz": 200,
        }
        assert plain == "plain http refused"
        # The same token from `pgha-operator token`.
        printed = subprocess.run(
            [sys.executable, "-m", "pgha_operator.cli", "token", "--operator-dir", str(opdir)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        assert printed.stdout.strip() == token
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

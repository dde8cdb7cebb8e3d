"""Who may read `run --listen`: the loopback rule, the token, the certificate, and a real
HTTPS server forced into the protected mode on 127.0.0.1."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import socket
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pgha_operator.cli import main
from pgha_operator.core.errors import PermanentError
from pgha_operator.shell import endpoint_access as ea
from pgha_operator.shell.status_http import Snapshot, denied, open_endpoint

STATUS = {"cluster": "demo", "phase": "Converged"}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.0.9", True),
        ("10.1.2.3", False),
        ("10.0.0.1", False),
        ("192.168.1.5", False),
        ("0.0.0.0", False),  # every address, so the outside too
    ],
)
def test_only_loopback_stays_open(host: str, loopback: bool, tmp_path: Path) -> None:
    assert ea.is_loopback(host) is loopback
    access = ea.access_for(host, tmp_path / "op")
    assert (access is None) is loopback


def test_protected_mode_makes_a_0600_token_and_a_certificate_naming_the_address(
    tmp_path: Path,
) -> None:
    op = tmp_path / "op"
    access = ea.access_for("10.20.30.40", op)
    assert access is not None
    assert stat.S_IMODE(os.stat(op).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(op / "token").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(op / "endpoint.key").st_mode) == 0o600
    assert (op / "token").read_text().strip() == access.token and len(access.token) >= 40
    cert = x509.load_pem_x509_certificate((op / "endpoint.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.20.30.40") in san.get_values_for_type(x509.IPAddress)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # The same files next time: clients that pinned the certificate keep working.
    before = (op / "endpoint.crt").read_bytes()
    again = ea.access_for("10.20.30.40", op)
    assert again is not None and again.token == access.token
    assert (op / "endpoint.crt").read_bytes() == before


def test_certificate_reissued_for_a_new_address_or_near_its_end(tmp_path: Path) -> None:
    ea.ensure_dir(tmp_path)
    ea.ensure_certificate(tmp_path, "10.0.0.1")
    first = (tmp_path / "endpoint.crt").read_bytes()
    ea.ensure_certificate(tmp_path, "10.0.0.2")
    assert (tmp_path / "endpoint.crt").read_bytes() != first
    key = ec.generate_private_key(ec.SECP256R1())
    old = ea.self_signed(key, ea.endpoint_names("10.0.0.2"), datetime.now(UTC) - timedelta(800))
    (tmp_path / "endpoint.crt").write_bytes(old.public_bytes(ea.serialization.Encoding.PEM))
    assert not ea.certificate_fits(tmp_path / "endpoint.crt", ea.endpoint_names("10.0.0.2"))
    (tmp_path / "endpoint.crt").write_text("not a certificate")
    assert not ea.certificate_fits(tmp_path / "endpoint.crt", ea.endpoint_names("10.0.0.2"))


def test_an_empty_token_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    with pytest.raises(PermanentError, match="token file is empty"):
        ea.load_or_create_token(tmp_path)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer  s3cret ", True),
        (basic("anyone", "s3cret"), True),
        ("Bearer wrong", False),
        ("Bearer s3cret2", False),
        ("s3cret", False),
        ("Token s3cret", False),
        (basic("s3cret", ""), False),
        ("Basic !!!notbase64", False),
        ("", False),
        (None, False),
    ],
)
def test_token_matches(header: str | None, ok: bool) -> None:
    assert ea.token_matches(header, "s3cret") is ok


def test_every_path_but_the_probes_needs_the_token(tmp_path: Path) -> None:
    access = ea.access_for("10.0.0.1", tmp_path)
    assert access is not None
    for path in ("/", "/status", "/status?x=1", "/metrics", "/nothing"):
        answer = denied(path, None, access)
        assert answer is not None and answer.code == 401, path
        schemes = [v.split()[0] for k, v in answer.headers if k == "WWW-Authenticate"]
        assert schemes == ["Bearer", "Basic"]
        assert denied(path, f"Bearer {access.token}", access) is None
    for path in ("/healthz", "/readyz/"):
        assert denied(path, None, access) is None
    assert denied("/status", None, None) is None  # loopback: open


def test_a_real_https_server_in_protected_mode(tmp_path: Path) -> None:
    """127.0.0.1 is loopback, so the protected mode is forced (`secure`) for this test;
    tests/integration/test_endpoint_netns.py shows the rule itself on a 10.x address."""
    snap = Snapshot(STATUS, at=time.monotonic())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = open_endpoint(f"127.0.0.1:{port}", tmp_path, lambda: snap, secure=True)
    server.start()
    try:
        cert = str(tmp_path / "endpoint.crt")
        token = (tmp_path / "token").read_text().strip()
        assert server.url.startswith("https://127.0.0.1:")
        assert requests.get(f"{server.url}/status", verify=cert, timeout=5).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert (
            requests.get(f"{server.url}/", headers=bad, verify=cert, timeout=5).status_code == 401
        )
        good = {"Authorization": f"Bearer {token}"}
        resp = requests.get(f"{server.url}/status", headers=good, verify=cert, timeout=5)
        assert resp.status_code == 200 and resp.json() == STATUS
        page = requests.get(server.url, auth=("me", token), verify=cert, timeout=5)
        assert page.status_code == 200 and "<title>pgha-operator" in page.text
        health = requests.get(f"{server.url}/healthz", verify=cert, timeout=5)
        assert health.status_code == 200 and json.loads(health.text)["ok"] is True
        # Plain HTTP on the TLS port gets nothing, and the server keeps serving.
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url.replace("https", "http"), timeout=5)
        assert requests.get(f"{server.url}/readyz", verify=cert, timeout=5).status_code == 200
        # Without the operator's certificate, the client refuses the endpoint.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{server.url}/healthz", timeout=5)
    finally:
        server.stop()


def test_token_command_prints_the_same_token_every_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--operator-dir", str(tmp_path / "op")]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["token", "--operator-dir", str(tmp_path / "op")]) == 0
    assert (
        capsys.readouterr().out.strip() == first == (tmp_path / "op" / "token").read_text().strip()
    )

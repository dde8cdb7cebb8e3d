"""Rendered files checked by the real programs: `haproxy -c`, `patroni --validate-config`,
and etcd / HAProxy actually started from what render produced.

Everything that opens a socket runs inside a network namespace the test creates (only
`lo` in it): `patroni --validate-config` connects to every etcd host and probes the listen
ports, and the non-local manifests name addresses (10.x, 192.168.x) that must never see a
packet from a test. Inside the namespace those connects fail at once (ENETUNREACH), and
the demo's 127.0.10.x addresses cannot collide with a cluster running on this host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha_operator.core import spec, topology
from pgha_operator.core.render import (
    Binaries,
    DesiredFile,
    RenderContext,
    Secrets,
    render_all,
    service_definitions,
)
from pgha_operator.core.render.haproxy import METRICS_PATH, STATS_USER
from pgha_operator.core.tls import placeholder_material
from pgha_operator.shell.clients.tls import ClientTls
from pgha_operator.shell.state.pki import client_files, load_or_issue

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))
PATRONI = Path(sys.executable).parent / "patroni"  # the operator's venv: same Patroni 4.1
BINARIES = Binaries()
SECRETS = Secrets(
    "su-pw-int", "repl-pw-int", "admin-pw-int", "rest-pw-int", "app-pw-int", "stats-pw-int"
)
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C.UTF-8"}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def _require(path: str | Path) -> None:
    if not Path(path).is_file():
        pytest.skip(f"{path} is not installed (make setup)")


# --- rendering into a temp dir --------------------------------------------------------------


def render_local(cluster: spec.Cluster, root: Path) -> tuple[RenderContext, list[DesiredFile]]:
    """Render with every machine under root/<machine> (a local layout), whatever the
    provider: the stats socket's and data directories' parents then exist, and nothing
    outside the temp dir is read or written. The rendered text is not rewritten."""
    topo = topology.build(cluster)
    layouts = {m.name: topology.layout(str(root / m.name), cluster.name) for m in topo.machines}
    # Real certificates (etcd will not start on placeholders); the operator's are in
    # client_files(root / "state").
    issued = load_or_issue(root / "state", cluster, topo, datetime.now(UTC))
    ctx = RenderContext(
        cluster=cluster,
        topology=topo,
        layouts=layouts,
        secrets=SECRETS,
        tls=issued.material,
        binaries=BINARIES,
        service_user="postgres",
        service_manager="local",
    )
    files = list(render_all(ctx))
    for f in files:
        path = Path(f.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.content)
        path.chmod(f.mode)
    for layout in layouts.values():
        Path(layout.haproxy_socket).parent.mkdir(parents=True, exist_ok=True)
    return ctx, files


def load(name: str) -> spec.Cluster:
    return spec.load([REPO / "manifests" / name])[0].cluster


def configs(files: list[DesiredFile], service: str) -> list[DesiredFile]:
    return [f for f in files if f.service == service and not f.certificate]


# --- a private network namespace ------------------------------------------------------------


@dataclass
class Netns:
    name: str
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    last_error: str = ""

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.name}", *argv]

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(argv), env=CLEAN_ENV, capture_output=True, text=True, timeout=timeout
        )

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        # setsid (start_new_session): a daemon must not die with the test's process group.
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.argv(argv),
                env=CLEAN_ENV,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def http(
        self,
        url: str,
        data: dict[str, Any] | None = None,
        tls: ClientTls | None = None,
        auth: tuple[str, str] | None = None,
    ) -> str | None:
        """GET (or POST JSON) from inside the namespace; None if it does not answer. With
        `tls`: the server verified against tls.ca, tls.cert presented; `auth`: basic auth."""
        files = [tls.ca, tls.cert, tls.key] if tls else []
        argv = [sys.executable, "-c", HTTP_PROBE, url, json.dumps(data), json.dumps(auth), *files]
        result = self.run(argv, timeout=10)
        self.last_error = result.stderr
        return result.stdout if result.returncode == 0 else None


HTTP_PROBE = """
import base64, json, ssl, sys, urllib.request
data, auth = json.loads(sys.argv[2]), json.loads(sys.argv[3])
body = None if data is None else json.dumps(data).encode()
context = None
if len(sys.argv) > 4:
    context = ssl.create_default_context(cafile=sys.argv[4])
    context.load_cert_chain(sys.argv[5], sys.argv[6])
request = urllib.request.Request(sys.argv[1], data=body)
if auth:
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
with urllib.request.urlopen(request, timeout=2, context=context) as r:
    sys.stdout.write(r.read().decode())
"""


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its PID: TERM, then KILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def netns() -> Iterator[Netns]:
    if shutil.which("nsenter") is None or shutil.which("ip") is None:
        pytest.skip("needs nsenter and ip (util-linux, iproute2)")
    name = f"pgha-rv-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    ns = Netns(name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        for proc in reversed(ns.started):
            stop(proc)
        subprocess.run(["ip", "netns", "del", name], check=False)


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tails}")


# --- HAProxy --------------------------------------------------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A folder with a short path: the stats socket's path must fit a Unix socket address
    (HAProxy: at most 97 characters), and pytest's tmp_path for a long test name and a
    machine named haproxynode2 did not."""
    folder = Path(tempfile.mkdtemp(prefix="pgha-rv-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_haproxy_check_accepts_the_rendered_config(manifest: Path, short_tmp: Path) -> None:
    _require(BINARIES.haproxy)
    _, files = render_local(spec.load([manifest])[0].cluster, short_tmp)
    cfgs = configs(files, "haproxy")
    assert cfgs
    for f in cfgs:
        # -c parses and checks everything, binds and connects nothing.
        result = subprocess.run(
            [BINARIES.haproxy, "-c", "-f", f.path], capture_output=True, text=True, timeout=30
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert output == "Configuration file is valid\n"  # no [WARNING], no [ALERT]


def test_haproxy_check_refuses_a_broken_config(tmp_path: Path) -> None:
    _require(BINARIES.haproxy)
    _, files = render_local(load("demo.yaml"), tmp_path)
    (f,) = configs(files, "haproxy")
    broken = Path(f.path)
    broken.write_text(f.content.replace("http-check expect status 200", "http-check expect 200"))
    result = subprocess.run(
        [BINARIES.haproxy, "-c", "-f", str(broken)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "[ALERT]" in result.stderr


@needs_root
def test_haproxy_runs_from_its_definition_and_reloads(netns: Netns, tmp_path: Path) -> None:
    _require(BINARIES.haproxy)
    ctx, _ = render_local(load("demo.yaml"), tmp_path)
    (lb,) = ctx.topology.loadbalancers
    (definition,) = service_definitions(ctx, lb)
    assert definition.name == "haproxy"
    log = tmp_path / "haproxy.log"
    master = netns.spawn(list(definition.argv), log)
    sock = ctx.layouts[lb].haproxy_socket
    wait_for("the stats socket", lambda: stats_rows(sock) is not None, 15, [log])

    rows = stats_rows(sock) or []
    assert ("stats", "FRONTEND") in rows
    for proxy in ("primary", "replicas"):
        assert (proxy, "FRONTEND") in rows and (proxy, "BACKEND") in rows
        assert [s for p, s in rows if p == proxy and s not in ("FRONTEND", "BACKEND")] == list(
            ctx.topology.postgres
        )
    ports = ctx.cluster.spec.load_balancer.ports
    page_url = f"http://{ctx.topology.address(lb)}:{ports.stats}/;csv"
    assert netns.http(page_url) is None and "401" in netns.last_error  # no credentials
    page = netns.http(page_url, auth=(STATS_USER, SECRETS.stats_password))
    assert page is not None and "primary,BACKEND" in page, log.read_text()
    # HAProxy's Prometheus exporter: the same port, the same credentials.
    metrics_url = f"http://{ctx.topology.address(lb)}:{ports.stats}{METRICS_PATH}"
    assert netns.http(metrics_url) is None and "401" in netns.last_error
    metrics = netns.http(metrics_url, auth=(STATS_USER, SECRETS.stats_password))
    assert metrics is not None and 'haproxy_backend_status{proxy="primary"' in metrics

    # The reload the supervisor sends: the master re-executes, the old worker finishes.
    assert definition.reload_signal == "USR2"
    os.kill(master.pid, signal.SIGUSR2)
    wait_for("the reload", lambda: log.read_text().count("Loading success") >= 2, 15, [log])
    assert master.poll() is None, log.read_text()
    assert stats_rows(sock) is not None


def stats_rows(sock: str) -> list[tuple[str, str]] | None:
    """(proxy, server) of `show stat` on HAProxy's admin socket; None if it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    lines = [line for line in data.decode().splitlines() if line and not line.startswith("#")]
    return [tuple(line.split(",")[:2]) for line in lines] or None  # type: ignore[misc]


# --- Patroni --------------------------------------------------------------------------------


def unreachable_etcd_lines(ctx: RenderContext) -> list[str]:
    topo = ctx.topology
    hosts = [f"{topo.address(n)}:{topo.etcd_client_port}" for n in topo.etcd]
    return [
        f"etcd3.hosts.{i} {h} didn't pass validation: {h} is not reachable"
        for i, h in enumerate(hosts)
    ]


@needs_root
@pytest.mark.parametrize("manifest", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_patroni_validate_config_without_etcd(manifest: Path, netns: Netns, tmp_path: Path) -> None:
    """With no etcd answering, the only complaint is that: everything else in patroni.yml
    (schema, bin_dir, data_dir, listen ports, connect addresses) passes."""
    _require(PATRONI)
    ctx, files = render_local(spec.load([manifest])[0].cluster, tmp_path)
    cfgs = configs(files, "patroni")
    assert len(cfgs) == len(ctx.topology.postgres)
    for f in cfgs:
        result = netns.run([str(PATRONI), "--validate-config", f.path])
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""
        assert result.stderr.splitlines() == unreachable_etcd_lines(ctx)


@needs_root
def test_patroni_validate_config_reports_a_wrong_bin_dir(netns: Netns, tmp_path: Path) -> None:
    _require(PATRONI)
    cluster = load("demo.yaml")
    topo = topology.build(cluster)
    missing = str(tmp_path / "no-such-bin")
    ctx = RenderContext(
        cluster=cluster,
        topology=topo,
        layouts={m.name: topology.layout(str(tmp_path / m.name)) for m in topo.machines},
        secrets=SECRETS,
        tls=placeholder_material(tuple(m.name for m in topo.machines)),
        binaries=Binaries(pg_bin_dir=missing),
        service_user="postgres",
        service_manager="local",
    )
    (f,) = [
        f
        for f in render_all(ctx)
        if f.service == "patroni" and f.machine == "node1" and not f.certificate
    ]
    path = tmp_path / "patroni.yml"
    path.write_text(f.content)
    result = netns.run([str(PATRONI), "--validate-config", str(path)])
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        *unreachable_etcd_lines(ctx),
        # Patroni leaves the value column empty for directory checks (hence two spaces).
        f"postgresql.bin_dir  Directory '{missing}' does not exist.",
    ]


# --- etcd, then Patroni against it ----------------------------------------------------------


@needs_root
def test_demo_etcd_starts_from_its_config_and_patroni_validates(
    netns: Netns, tmp_path: Path
) -> None:
    _require(BINARIES.etcd)
    _require(PATRONI)
    ctx, files = render_local(load("demo.yaml"), tmp_path)
    topo = ctx.topology
    logs = []
    for name in topo.etcd:
        (definition,) = service_definitions(ctx, name)
        assert definition.name == "etcd"
        log = tmp_path / f"{name}.log"
        logs.append(log)
        netns.spawn(list(definition.argv), log)

    operator = client_files(tmp_path / "state")

    def healthy() -> bool:
        for url in topo.etcd_client_urls:
            body = netns.http(f"{url}/health", tls=operator)
            if body is None or json.loads(body).get("health") != "true":
                return False
        return True

    wait_for("3 healthy etcd members", healthy, 30, logs)

    # The members etcd formed are the ones rendered: names, peer and client URLs.
    body = netns.http(f"{topo.etcd_client_urls[0]}/v3/cluster/member/list", {}, operator)
    assert body is not None, netns.last_error
    # Without a client certificate, or over plain http, etcd does not answer.
    assert netns.http(f"{topo.etcd_client_urls[0]}/health") is None
    plain = topo.etcd_client_urls[0].replace("https://", "http://")
    assert netns.http(f"{plain}/health") is None
    members = {m["name"]: m for m in json.loads(body)["members"]}
    assert set(members) == set(topo.etcd)
    for name in topo.etcd:
        assert members[name]["peerURLs"] == [topo.etcd_peer_url(name)]
        assert members[name]["clientURLs"] == [f"https://{topo.address(name)}:2379"]

    # etcd ignores unknown keys: check it took each rendered value (it logs what it runs with).
    for name, log in zip(topo.etcd, logs, strict=True):
        rendered = yaml.safe_load(
            next(f for f in configs(files, "etcd") if f.machine == name).content
        )
        effective = etcd_effective_config(log)
        assert effective["name"] == name
        assert effective["data-dir"] == rendered["data-dir"]
        assert effective["initial-cluster"] == rendered["initial-cluster"]
        assert effective["initial-cluster-state"] == "new"
        assert effective["initial-cluster-token"] == "demo"
        assert effective["listen-client-urls"] == [rendered["listen-client-urls"]]
        assert effective["listen-peer-urls"] == [rendered["listen-peer-urls"]]
        assert effective["pre-vote"] is True
        assert effective["auto-compaction-mode"] == "periodic"
        assert effective["auto-compaction-retention"] == "1h0m0s"
        assert effective["heartbeat-interval"] == "100ms"
        assert effective["election-timeout"] == "1s"
        # It took the TLS sections (a mistyped key would be ignored, then https refused).
        text = log.read_text()
        for kind in ("peer", "client"):
            assert f'"msg":"starting with {kind} TLS"' in text
        assert text.count("client-cert-auth = true") >= 2

    # With etcd up, every rendered patroni.yml passes validation and prints nothing.
    for f in configs(files, "patroni"):
        for extra in ([], ["--ignore-listen-port"]):
            result = netns.run([str(PATRONI), "--validate-config", *extra, f.path])
            assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def etcd_effective_config(log: Path) -> dict[str, Any]:
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "starting an etcd server":
                return entry
    raise AssertionError(f"no 'starting an etcd server' line in {log}")

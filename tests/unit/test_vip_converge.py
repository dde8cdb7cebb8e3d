"""spec.loadBalancer.vip converged (pure): keepalived's files, unit and place in the plan,
HAProxy listening on the VIP, and the VIP in the server certificates."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from cryptography import x509

from pgha_operator.core import topology
from pgha_operator.core.actions import ReloadService, StartService, WriteFile
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.errors import OperatorError
from pgha_operator.core.passfile import endpoints
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.render import Binaries, render_machine, service_definitions
from pgha_operator.core.render.haproxy import haproxy_cfg
from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import Cluster
from pgha_operator.shell.execute import Env, _write_file
from pgha_operator.shell.hosts.base import CommandResult
from pgha_operator.shell.state.pki import load_or_issue
from tests.unit.test_plan import converged
from tests.unit.test_render import REPO, make_ctx, variant

NSPAWN = REPO / "manifests" / "nspawn.yaml"
VIP = "10.231.0.250"


def cluster(vip: bool = True) -> Cluster:
    lb: dict = {"instances": 2}
    if vip:
        lb["vip"] = {"address": VIP}
    return variant(NSPAWN, loadBalancer=lb)


def desired(c: Cluster) -> Desired:
    d, _ = build_desired(c, None, PLACEHOLDER_SECRETS, Binaries(), "postgres", "systemd")
    return d


def test_keepalived_runs_on_every_load_balancer_and_nowhere_else() -> None:
    d = desired(cluster())
    for name in ("haproxy1", "haproxy2"):
        assert d.services[name] == ("haproxy", "keepalived")  # the VIP after the router
        paths = [f.path for f in d.files if f.machine == name and f.service == "keepalived"]
        # the check script before the config that names it (keepalived -t looks for it)
        assert paths == [
            "/etc/pgha/lab/keepalived/check-haproxy.sh",
            "/etc/pgha/lab/keepalived/keepalived.conf",
        ]
    assert all("keepalived" not in d.services[n] for n in ("node1", "node2", "node3"))
    plain = desired(cluster(vip=False))
    assert plain.services["haproxy1"] == ("haproxy",)
    assert not any("keepalived" in f.path for f in plain.files)


def test_the_unit_restarts_keepalived_and_keeps_its_pid_files_apart() -> None:
    ctx = make_ctx(cluster(), manager="systemd")
    unit = next(f for f in render_machine(ctx, "haproxy1") if f.path.endswith("keepalived.service"))
    assert unit.path == "/etc/systemd/system/pgha-lab-keepalived.service"
    text = unit.content
    assert "Restart=always" in text
    assert "After=network-online.target pgha-lab-haproxy.service" in text
    assert "RuntimeDirectory=pgha/lab/keepalived" in text
    (definition,) = [d for d in service_definitions(ctx, "haproxy1") if d.name == "keepalived"]
    argv = list(definition.argv)
    assert argv[argv.index("--use-file") + 1] == "/etc/pgha/lab/keepalived/keepalived.conf"
    assert argv[argv.index("--pid") + 1] == "/run/pgha/lab/keepalived/keepalived.pid"
    assert "--dont-fork" in argv and "--vrrp" in argv
    assert definition.reload_signal == "HUP" and definition.user is None


def test_haproxy_listens_on_the_vip_before_it_holds_it() -> None:
    cfg = haproxy_cfg(make_ctx(cluster()), "haproxy2")
    binds = [line.strip() for line in cfg.splitlines() if line.strip().startswith("bind ")]
    assert f"bind {VIP}:5000 transparent" in binds and f"bind {VIP}:5001 transparent" in binds
    assert "bind 10.231.0.202:5000" in binds
    assert not any(VIP in b and ":7000" in b for b in binds)  # the stats page stays private
    assert VIP not in haproxy_cfg(make_ctx(cluster(vip=False)), "haproxy2")


def test_a_stopped_keepalived_is_started_and_a_changed_config_reloaded() -> None:
    d = desired(cluster())
    observed = converged(d)
    assert plan(d, observed).actions == ()
    stopped = replace(
        observed, services={**observed.services, ("haproxy2", "keepalived"): ServiceState.FAILED}
    )
    assert plan(d, stopped).actions == (StartService("haproxy2", "keepalived"),)
    conf = "/etc/pgha/lab/keepalived/keepalived.conf"
    edited = replace(observed, files={**observed.files, ("haproxy1", conf): "edited"})
    actions = plan(d, edited).actions
    assert isinstance(actions[-1], ReloadService)
    assert (actions[-1].machine, actions[-1].service) == ("haproxy1", "keepalived")


def test_the_vip_joins_every_server_certificate(tmp_path: Path) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    state = tmp_path / "state"
    load_or_issue(state, cluster(vip=False), topology.build(cluster(vip=False)), now)
    issued = load_or_issue(state, cluster(), topology.build(cluster()), now)
    assert dict(issued.renewed)["node1"] == "names changed"
    crt = x509.load_pem_x509_certificate((state / "tls/machines/node1.crt").read_bytes())
    san = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(VIP) in san.get_values_for_type(x509.IPAddress)


class CheckingHost:
    """A host whose keepalived refuses a config holding 'bogus' (or knows no --config-test)."""

    def __init__(self, answer: str = "") -> None:
        self.files: dict[str, bytes] = {}
        self.checked: list[list[str]] = []
        self.answer = answer

    def write(self, path: str, data: bytes, *, mode: int = 0o644, owner: str | None = None) -> bool:
        self.files[path] = data
        return True

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def run(self, argv: list[str], check: bool = True, **_: object) -> CommandResult:
        self.checked.append(list(argv))
        if self.answer:
            return CommandResult(tuple(argv), 1, "", self.answer)
        bad = b"bogus" in self.files[argv[-1]]
        return CommandResult(tuple(argv), int(bad), "", "unknown keyword 'bogus'" if bad else "")


def write_conf(host: CheckingHost, content: str) -> str | None:
    path = "/etc/pgha/lab/keepalived/keepalived.conf"
    env = cast(
        Env, SimpleNamespace(provider=SimpleNamespace(host=lambda _: host), binaries=Binaries())
    )
    try:
        _write_file(WriteFile("haproxy1", path, content, 0o644, None, "changed"), env)
    except OperatorError as exc:
        return str(exc)
    return None


def test_keepalived_checks_a_candidate_before_it_replaces_the_live_config() -> None:
    host = CheckingHost()
    assert write_conf(host, "global_defs {}\n") is None
    assert host.checked == [
        [
            "/usr/sbin/keepalived",
            "--config-test",
            "--use-file",
            "/etc/pgha/lab/keepalived/keepalived.conf.pgha-new",
        ]
    ]
    live = dict(host.files)
    error = write_conf(host, "bogus\n")
    assert error is not None and "keepalived --config-test refused" in error and "bogus" in error
    assert host.files == live  # the live file kept, the candidate removed
    # A keepalived without --config-test: the file is used as rendered.
    old = CheckingHost(answer="keepalived: unrecognized option '--config-test'")
    assert write_conf(old, "global_defs {}\n") is None


def test_the_passfiles_list_the_vip_for_the_logins_that_go_through_it() -> None:
    c = cluster()
    app = endpoints(c, topology.build(c), "app")
    assert (VIP, 5000) in app and (VIP, 5001) in app
    assert all(host != VIP for host, _ in endpoints(c, topology.build(c), "postgres"))

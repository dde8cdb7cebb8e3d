"""Status of the cluster's certificates: days until the first ends and CertificatesValid,
from the pure condition up to the real Controller cycle against the fake world."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pgha_operator.core.actions import ReloadService, RestartService, WriteFile
from pgha_operator.core.conditions import certificates_valid
from pgha_operator.core.status import format_status
from pgha_operator.shell.controller import Controller
from tests.fakeworld.drift import manifest
from tests.fakeworld.world import FakeWorld
from tests.unit.test_controller_fakeworld import controller_for, cycles


@pytest.mark.parametrize(
    ("days", "status", "reason"),
    [
        (90, True, "ok"),
        (7.01, True, "ok"),
        (7, False, "Expiring: a certificate ends in 7.0 days and was not renewed"),
        (0.5, False, "Expiring: a certificate ends in 0.5 days"),
        (0, False, "Expired: a certificate ended 0.0 days ago"),
        (-3, False, "Expired: a certificate ended 3.0 days ago"),
    ],
)
def test_the_condition(days: float, status: bool, reason: str) -> None:
    c = certificates_valid(days, renew_before_days=7)
    assert c.type == "CertificatesValid"
    assert c.status is status
    assert c.reason.startswith(reason)
    assert not c.transient  # waiting will not fix it


def converged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Controller, FakeWorld]:
    world = FakeWorld.for_cluster(manifest())
    controller = controller_for(world, tmp_path, monkeypatch)
    assert cycles(controller, world, 30)[-1].converged
    return controller, world


def status_file(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state" / "status.json").read_text())


def condition(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "CertificatesValid")


def test_a_converged_cluster_shows_its_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converged(tmp_path, monkeypatch)
    status = status_file(tmp_path)
    assert 89.9 < status["certificates"]["daysLeft"] <= 90
    assert condition(status) == {"type": "CertificatesValid", "status": "True", "reason": "ok"}
    text = format_status(status)
    assert "certificates: the first ends in 90.0 days" in text or "89.9 days" in text
    assert "CertificatesValid" in text


def test_status_read_only_says_expiring_when_nobody_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator stopped for 85 days: `status` (reads only) says so; nothing renewed."""
    controller, _ = converged(tmp_path, monkeypatch)
    before = (tmp_path / "state/tls/machines/node1.crt").read_bytes()
    real = controller.clock
    controller.clock = lambda: real() + timedelta(days=85)
    report = controller.cycle(act=False)
    assert report.status["certificates"]["daysLeft"] == pytest.approx(5, abs=0.1)
    assert condition(report.status)["status"] == "False"
    assert condition(report.status)["reason"].startswith("Expiring: a certificate ends in 5.0")
    assert report.phase == "Degraded"
    assert "CertificatesValid False Expiring" in " ".join(format_status(report.status).split())
    assert (tmp_path / "state/tls/machines/node1.crt").read_bytes() == before
    controller.clock = lambda: real() + timedelta(days=91)
    assert condition(controller.cycle(act=False).status)["reason"].startswith("Expired")


def test_the_operator_renews_and_picks_up_without_restarting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, world = converged(tmp_path, monkeypatch)
    real = controller.clock
    controller.clock = lambda: real() + timedelta(days=85)
    events: list[str] = []
    record = controller.event
    monkeypatch.setattr(controller, "event", lambda m: (events.append(m), record(m)))
    report = controller.cycle()
    actions = report.plan.actions
    assert not any(isinstance(a, RestartService) for a in actions)
    reloads = {(a.machine, a.service) for a in actions if isinstance(a, ReloadService)}
    assert reloads == {("node1", "patroni"), ("node2", "patroni"), ("node3", "patroni")}
    etcd_writes = [a for a in actions if isinstance(a, WriteFile) and "/etcd/" in a.path]
    assert sorted({a.path.rsplit("/", 1)[1] for a in etcd_writes}) == ["server.crt", "server.key"]
    assert (
        "certificates issued (expires in 5.0 days): etcd1, etcd2, etcd3, node1, node2, node3, "
        "haproxy, patroni-etcd, operator"
    ) in events
    world.tick()
    last = cycles(controller, world, 10)[-1]
    assert last.converged
    assert last.status["certificates"]["daysLeft"] == pytest.approx(90, abs=0.1)
    assert condition(last.status)["status"] == "True"

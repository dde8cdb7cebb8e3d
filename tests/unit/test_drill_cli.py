"""`pgha-operator drill` refuses before touching anything, and prints its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha_operator.cli import build_parser, main
from pgha_operator.drill.checker import RunFigures
from pgha_operator.drill.cli import format_table
from pgha_operator.drill.faults import FAULTS
from pgha_operator.drill.report import DrillResult
from pgha_operator.drill.writer import ClientTimeouts
from pgha_operator.shell.state import StateDir

MANIFEST = """apiVersion: pgha/v1
kind: Cluster
metadata:
  name: drills
spec:
  provider: {{type: local, network: 127.0.59.0/24}}
{extra}
"""


def manifest(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(MANIFEST.format(extra=extra))
    return path


def drill(tmp_path: Path, path: Path, *args: str) -> int:
    return main(["drill", "-f", str(path), "--state-dir", str(tmp_path / "state"), *args])


def test_parser_knows_every_scenario_and_the_options() -> None:
    args = build_parser().parse_args(
        [
            "drill",
            "-f",
            "a.yaml",
            "-f",
            "b.yaml",
            "--scenario",
            "crash-primary",
            "--repeat",
            "3",
            "--json",
            "--yes",
            "--seconds",
            "5",
            "--cluster",
            "x",
            "--state-dir",
            "/s",
        ]
    )
    assert args.files == ["a.yaml", "b.yaml"] and args.scenario == "crash-primary"
    assert args.repeat == 3 and args.json and args.yes and args.seconds == 5.0
    assert args.cluster == "x" and str(args.state_dir) == "/s"
    assert set(FAULTS) == {
        "switchover",
        "crash-primary",
        "freeze-primary",
        "crash-replica",
        "kill-etcd-member",
        "etcd-quorum-loss",
        "partition-primary",
        "crash-loadbalancer",
        "freeze-loadbalancer",
    }
    with pytest.raises(SystemExit):
        build_parser().parse_args(["drill", "--scenario", "meteor", "--yes"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["drill", "--scenario", "switchover", "--repeat", "0"])


def test_refused_when_the_manifest_does_not_allow_drills(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path)  # drills default to forbidden
    assert drill(tmp_path, path, "--scenario", "crash-primary", "--yes") == 2
    err = capsys.readouterr().err
    assert "does not allow drills" in err and "spec.drills: allowed" in err
    assert str(path) in err
    assert not (tmp_path / "state").exists()


def test_refused_without_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = manifest(tmp_path, "  drills: allowed")
    assert drill(tmp_path, path, "--scenario", "switchover") == 2
    assert "add --yes" in capsys.readouterr().err


def test_refused_when_the_cluster_was_never_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "  drills: allowed")
    assert drill(tmp_path, path, "--scenario", "switchover", "--yes") == 2
    assert "apply it first" in capsys.readouterr().err


def test_partition_is_refused_on_the_local_provider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "  drills: allowed")
    StateDir(tmp_path / "state").load_or_create_secrets()  # as after an apply
    assert drill(tmp_path, path, "--scenario", "partition-primary", "--yes") == 2
    err = capsys.readouterr().err
    assert "network namespace" in err and "nspawn" in err and "127.0.0.1" in err


def figures(**kw: object) -> RunFigures:
    base: dict[str, object] = {
        "scenario": "crash-primary",
        "targets": ("node1",),
        "old_primary": "node1",
        "new_primary": "node2",
        "fault_seconds": 21.0,
        "write_gap_seconds": 20.4,
        "writes_resumed_seconds": 20.4,
        "acked_rows": 2000,
        "acked_lost": 0,
        "lost_rows": (),
        "failed_attempts": 1500,
        "unknown_attempts": 4,
        "unknown_committed": 1,
        "failed_but_present": 0,
        "dual_primary_seconds": 0.0,
        "dual_primary_nodes": (),
        "new_primary_accepted_seconds": 20.1,
        "acked_by_old_primary_after_failover": 0,
        "old_primary_stopped_writes_seconds": 0.0,
        "rejoined_seconds": 27.0,
        "converged_seconds": 28.0,
    }
    base.update(kw)
    return RunFigures(**base)  # type: ignore[arg-type]


def result_of(runs: list[RunFigures], operator: str, logs: list[str] | None = None) -> DrillResult:
    return DrillResult(
        cluster="demo",
        scenario="crash-primary",
        clients=4,
        timeouts=ClientTimeouts(),
        profile="fast",
        synchronous="off",
        ttl=20,
        runs=runs,
        operator=operator,
        logs=logs or [],
    )


def test_table_and_json_carry_each_run_and_the_verdict() -> None:
    bad = figures(dual_primary_seconds=0.4, problems=("two primaries for 0.400 s (node1, node2)",))
    result = result_of([figures(), bad], "drill", logs=["/s/drill/a.json", "/s/drill/b.json"])
    text = format_table(result)
    assert "20.40" in text and "two primaries for 0.400 s" in text
    assert text.splitlines()[-1].startswith("verdict: FAIL")
    data = result.to_json()
    assert data["scenario"] == "crash-primary" and data["verdict"] == "FAIL"
    assert [r["verdict"] for r in data["runs"]] == ["PASS", "FAIL"]
    assert [r["log"] for r in data["runs"]] == ["/s/drill/a.json", "/s/drill/b.json"]
    assert data["clientTimeouts"] == {"connectSeconds": 0.5, "statementSeconds": 2.0}
    ok = result_of([figures()], "running")
    assert ok.verdict == "PASS" and "repairs by the running operator" in format_table(ok)


class FakeProvider:
    def __init__(self, kind: str, can_fence: bool, *methods: str) -> None:
        self.kind = kind
        self.can_fence = can_fence
        for m in methods:
            setattr(self, m, lambda name: None)


class FakeTarget:
    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider


def refusals(provider: FakeProvider) -> dict[str, bool]:
    return {name: f.refusal(FakeTarget(provider)) is None for name, f in FAULTS.items()}  # type: ignore[arg-type]


def test_each_fault_asks_the_provider_for_the_capability_it_needs() -> None:
    nspawn = FakeProvider("nspawn", True, "power_off", "freeze", "thaw", "isolate", "reconnect")
    assert all(refusals(nspawn).values())
    vagrant = FakeProvider("vagrant", True, "power_off")
    assert refusals(vagrant) == {
        n: n not in ("freeze-primary", "partition-primary", "freeze-loadbalancer") for n in FAULTS
    }
    ssh = FakeProvider("ssh", False)
    assert [n for n, ok in refusals(ssh).items() if ok] == ["switchover"]
    reason = FAULTS["crash-primary"].refusal(FakeTarget(ssh))  # type: ignore[arg-type]
    assert reason is not None and "cannot" in reason and "ssh" in reason


def test_only_the_demo_manifest_allows_drills() -> None:
    from pgha_operator.core.spec import load

    allowed = {item.source.split("/")[-1]: item.cluster.spec.drills for item in load(["manifests"])}
    assert allowed.pop("demo.yaml") == "allowed"
    assert set(allowed.values()) == {"forbidden"}

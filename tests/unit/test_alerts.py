"""docs/alerts.yml: valid Prometheus rules (`promtool check rules`) that fire on the series
of docs/alerts.test.yml (`promtool test rules`), on the metric names the operator exports.
promtool comes with Debian's `prometheus` package, which `make setup` installs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pgha_operator.shell.metrics import OperatorMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: run `make setup` (Debian package prometheus)")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, cwd=DOCS, timeout=60, check=False
    )


def test_the_alert_rules_pass_promtool_check() -> None:
    res = promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_the_alerts_fire_on_the_given_series() -> None:
    res = promtool("test", "rules", "alerts.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_rules_use_only_metrics_the_operator_exports() -> None:
    exported = {
        sample.name for family in OperatorMetrics().registry.collect() for sample in family.samples
    } | {family.name for family in OperatorMetrics().registry.collect()}
    exported |= {f"{name}_total" for name in exported}
    used = set(re.findall(r"\bpgha_[a-z_]+", (DOCS / "alerts.yml").read_text()))
    assert used, "no pgha_ metric in the rules"
    assert used <= exported, used - exported

"""Prometheus config, recording and alert rules, and their promtool unit tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing; CI installs Debian's prometheus package (.ci/run)")
        pytest.skip("promtool comes with Debian's prometheus package")
    return promtool


def _run(*args: str, cwd: Path = ROOT) -> None:
    result = subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def _rules(kind: str) -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if kind in rule]
    return found


def test_config_is_valid() -> None:
    _run("check", "config", str(PROMETHEUS / "prometheus.yml"))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_rules_are_valid(path: Path) -> None:
    _run("check", "rules", str(path))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda path: path.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    _run("test", "rules", path.name, cwd=path.parent)


def test_every_alert_has_severity_summary_description_and_a_runbook() -> None:
    alerts = _rules("alert")
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        annotations = rule.get("annotations", {})
        assert "$labels.node" in annotations.get("summary", "") or "$labels.instance" in annotations["summary"], name
        assert annotations.get("description"), name
        runbook = annotations.get("runbook_url", "")
        assert runbook.startswith("docs/runbooks/") and (ROOT / runbook).is_file(), f"{name}: runbook {runbook!r}"


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _rules("alert")}
    assert names - firing == set(), "alerts never seen firing in a test"
    assert names - silent == set(), "alerts never seen silent in a test"


def test_recording_rules_are_named_level_metric_operations() -> None:
    records = _rules("record")
    assert records
    for rule in records:
        assert RECORD_NAME.match(rule["record"]), rule["record"]

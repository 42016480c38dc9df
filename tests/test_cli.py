"""The command line: bad plans are refused before anything starts, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soak.cli import app

runner = CliRunner()

BAD_PLANS = {
    "unknown workload": ("workloads: [{name: gemmm}]", "workloads[0].name: unknown workload 'gemmm'"),
    "negative duration": ("duration: -5m", "duration: '-5m' is negative"),
    "unknown precision": ("workloads: [{name: gemm, precision: fp9}]", "workloads[0].precision: 'fp9' is not one of"),
    "device count 0": ("devices: [{vendor: nvidia, count: 0}]", "devices[0].count: Input should be greater than"),
}
VALID = {
    "name": "name: cli-test",
    "duration": "duration: 10m",
    "devices": "devices: [{simulated: 2}]",
    "workloads": "workloads: [{name: gemm}]",
}


def _write(tmp_path: Path, replace: str) -> Path:
    key = replace.split(":", 1)[0]
    lines = [replace if field == key else line for field, line in VALID.items()]
    path = tmp_path / "plan.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_check_and_run_refuse_a_bad_plan_naming_the_field(tmp_path: Path, case: str) -> None:
    replace, expected = BAD_PLANS[case]
    path = _write(tmp_path, replace)
    for command in (["check", str(path)], ["run", str(path), "--url", "http://127.0.0.1:9"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.output.split()), result.output


def test_a_missing_name_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("\n".join(line for field, line in VALID.items() if field != "name") + "\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "name: required field is missing" in result.output


def test_a_valid_plan_checks_and_run_explains_an_unreachable_controller(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID["name"])
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    result = runner.invoke(app, ["run", str(path), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "cannot reach the controller" in result.output and "soak serve" in result.output

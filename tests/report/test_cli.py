"""`soak report`, `soak report verify` and `soak compare` on the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.cli import app
from soak.config import get_settings
from tests.report.conftest import StoredCampaign

runner = CliRunner()


@pytest.fixture
def cli_store(stored_campaign: StoredCampaign, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoredCampaign]:
    """SOAK_DATABASE_URL pointing at the shared simulated store, as the CLI reads it."""
    monkeypatch.setenv("SOAK_DATABASE_URL", stored_campaign.url)
    get_settings.cache_clear()
    yield stored_campaign
    get_settings.cache_clear()


def test_report_verify_and_compare(
    cli_store: StoredCampaign, report_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "signing.pem"
    assert runner.invoke(app, ["report", "keygen", str(key)]).exit_code == 0
    monkeypatch.setenv("SOAK_REPORT_SIGNING_KEY", str(key))
    get_settings.cache_clear()

    built = runner.invoke(app, ["report", "poc-a", "--format", "json", "--out", str(tmp_path / "out")])
    assert built.exit_code == 0, built.output
    directory = tmp_path / "out" / "campaign-1-poc-a"
    verdict = json.loads((directory / "report.json").read_text())["verdict"]
    flat = "".join(built.output.split())  # rich wraps long paths
    assert f"poc-a:{verdict}" in flat and f"signedwith{key}" in flat

    verified = runner.invoke(app, ["report", "verify", str(directory), "--public-key", f"{key}.pub"])
    assert verified.exit_code == 0, verified.output
    (directory / "data" / "findings.csv").write_text("id\n")
    tampered = runner.invoke(app, ["report", "verify", str(directory)])
    assert tampered.exit_code == 1
    assert "FAILED data/findings.csv: SHA-256 differs" in " ".join(tampered.output.split())

    bad = runner.invoke(app, ["report", "poc-a", "--format", "docx"])
    assert bad.exit_code == 2 and "'docx' is not a format" in bad.output

    # A second fleet of other hardware in the same store, compared side by side.
    other = store_fleet(
        session=report_session,
        spec=FleetSpec(seed=4, devices=2, devices_per_node=2, days=0.1, sample_interval_s=60.0, warmup_s=600.0),
        name="poc-b",
    )
    compared = runner.invoke(app, ["compare", "poc-a", str(other.id), "--out", str(tmp_path / "out")])
    assert compared.exit_code == 0, compared.output
    comparison = json.loads((tmp_path / "out" / f"compare-1-vs-{other.id}" / "comparison.json").read_text())
    assert [c["campaign_name"] for c in comparison["campaigns"]] == ["poc-a", "poc-b"]
    assert all(c["workloads"][0]["workload"] == "train" for c in comparison["campaigns"])
    assert (tmp_path / "out" / f"compare-1-vs-{other.id}" / "comparison.pdf").read_bytes().startswith(b"%PDF")
    html = (tmp_path / "out" / f"compare-1-vs-{other.id}" / "comparison.html").read_text()
    assert "poc-a" in html and "poc-b" in html and "median sustained" in html

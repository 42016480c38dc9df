"""The report says what the store holds: findings, figures and verdict; the PDF carries them; verify catches edits."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from soak.campaigns.models import WorkloadRun
from soak.findings.service import list_findings
from soak.nodes.models import Device
from soak.report import export
from soak.report.bundle import ReportFormat, render, write_report_dir
from soak.report.manifest import MANIFEST
from soak.report.model import Report
from soak.report.signing import generate_key, load_private_key
from soak.report.verdict import SECTIONS
from soak.report.verify import verify_report
from soak.telemetry.summaries import campaign_summaries
from tests.report.conftest import StoredCampaign


def test_the_json_holds_the_stores_findings_and_figures(
    report: Report, report_session: Session, stored_campaign: StoredCampaign
) -> None:
    document = json.loads(render(report, ReportFormat.JSON))
    stored = list_findings(session=report_session, campaign_id=stored_campaign.campaign_id)
    assert stored, "the simulated fleet should give the detectors something to find"
    by_id = {finding["id"]: finding for finding in document["findings"]}
    assert set(by_id) == {finding.id for finding in stored}
    for finding in stored:
        shown = by_id[finding.id]
        assert (shown["device"], shown["kind"], shown["severity"], shown["explanation"]) == (
            finding.device,
            finding.kind,
            finding.severity,
            finding.explanation,
        )

    # Each criterion is broken by exactly the devices whose warning or critical findings are of its kinds.
    for criterion in document["criteria"]:
        kinds = next(section.kinds for section in SECTIONS if section.key == criterion["section"])
        breaking = [f for f in stored if f.kind in kinds and f.severity in ("warning", "critical")]
        assert criterion["failing_devices"] == sorted({f.device or "(campaign)" for f in breaking})
        expected = "fail" if any(f.severity == "critical" for f in breaking) else "conditional" if breaking else "pass"
        assert criterion["status"] == expected
    severities = {f.severity for f in stored}
    expected_verdict = "FAIL" if "critical" in severities else "CONDITIONAL" if "warning" in severities else "PASS"
    assert document["verdict"] == expected_verdict

    # Figures are the store's: hottest reading and mean power from the rollups, hours from the workload runs.
    rows = campaign_summaries(session=report_session, campaign_id=stored_campaign.campaign_id)
    summaries = {(s.device, s.metric): s for s in rows}
    for device in document["devices"]:
        assert device["max_temperature_c"] == pytest.approx(summaries[(device["device"], "device.temperature_c")].max)
        assert device["mean_power_w"] == pytest.approx(summaries[(device["device"], "device.power_w")].mean)
        runs = report_session.scalars(
            select(WorkloadRun).join(Device, Device.id == WorkloadRun.device_id).where(Device.name == device["device"])
        ).all()
        assert device["hours_under_load"] == pytest.approx(sum(r.ended_s - r.started_s for r in runs) / 3600)
        # No vendor tool reported ops, ECC counters as events, or SDC: counted as none, never invented.
        assert device["fallback_ops"] == [] and device["sdc_events"] == 0
    assert "plots" in document and all("png_base64" not in plot for plot in document["plots"])


def test_the_pdf_states_the_verdict_and_every_criterion(report: Report) -> None:
    pdf = pypdf.PdfReader(io.BytesIO(render(report, ReportFormat.PDF)))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    # Table cells wrap, so compare without whitespace.
    flat = re.sub(r"\s+", "", text)
    assert f"Verdict:{report.verdict.value}" in flat
    for criterion in report.criteria:
        assert re.sub(r"\s+", "", criterion.name) in flat
        assert re.sub(r"\s+", "", criterion.threshold) in flat
        assert criterion.status.value.upper() in flat
    assert f"page1of{len(pdf.pages)}" in flat and f"page{len(pdf.pages)}of{len(pdf.pages)}" in flat


def test_a_tampered_report_or_data_export_fails_verify(report: Report, report_session: Session, tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "report.pem"
    public_path = generate_key(key_path)
    written = write_report_dir(
        session=report_session,
        report=report,
        out_dir=tmp_path / "out",
        formats=[ReportFormat.HTML, ReportFormat.JSON],
        key=load_private_key(key_path),
    )
    directory = written.directory
    assert directory.name == "campaign-1-poc-a"
    assert verify_report(directory, trusted_key=public_path).ok
    assert {p.relative_to(directory).as_posix() for p in written.files} >= {
        "report.html",
        "report.json",
        "data/samples.csv",
        "data/events.csv",
        "data/findings.csv",
    }

    samples = directory / "data" / "samples.csv"
    original = samples.read_bytes()
    samples.write_bytes(original.replace(b",", b";", 1))
    result = verify_report(directory, trusted_key=public_path)
    assert result.failed == ["data/samples.csv: SHA-256 differs from the manifest (the file changed after the report)"]
    samples.write_bytes(original)

    # A file swapped for a link to a copy outside the directory is refused, not followed, though its bytes match.
    findings = directory / "data" / "findings.csv"
    outside = tmp_path / "findings.csv"
    outside.write_bytes(findings.read_bytes())
    findings.unlink()
    findings.symlink_to(outside)
    failed = verify_report(directory).failed
    assert failed == ["manifest.json: lists 'data/findings.csv', a path outside the report directory"]
    findings.unlink()
    findings.write_bytes(outside.read_bytes())

    html = directory / "report.html"
    html.write_text(html.read_text().replace('id="verdict"', 'id="verdict" hidden', 1))
    assert any(line.startswith("report.html: SHA-256 differs") for line in verify_report(directory).failed)
    html.unlink()
    assert "report.html: missing" in verify_report(directory).failed

    # Re-hashing the edited file into the manifest breaks the signature instead.
    manifest = directory / MANIFEST
    manifest.write_text(manifest.read_text().replace('"verdict": "', '"verdict": "X', 1))
    failed = verify_report(directory, trusted_key=public_path).failed
    assert any(line.startswith("manifest.json.sig: signature does not match") for line in failed)

    other_public = generate_key(tmp_path / "keys" / "other.pem")
    assert any("different public key" in line for line in verify_report(directory, trusted_key=other_public).failed)


def test_weeks_of_raw_samples_are_left_out_of_the_export_and_said_so(
    report: Report, report_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "MAX_EXPORTED_SAMPLES", 100)
    written = write_report_dir(
        session=report_session, report=report, out_dir=tmp_path, formats=[ReportFormat.JSON], key=None
    )
    names = {path.relative_to(written.directory).as_posix() for path in written.files}
    assert "data/samples.csv" not in names and "data/rollup_1h.csv" in names
    manifest = json.loads((written.directory / MANIFEST).read_text())
    assert manifest["export_left_out"].startswith("samples.csv: more than 100 raw samples are stored")
    assert verify_report(written.directory).ok

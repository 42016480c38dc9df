"""A report directory: the report in each asked-for format, the raw-data export beside it, and the manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from soak.paths import file_stem
from soak.report.export import export_campaign
from soak.report.html import render_html
from soak.report.manifest import write_manifest
from soak.report.model import Report
from soak.report.pdf import render_pdf


class ReportFormat(StrEnum):
    """A format the report is written in."""

    HTML = "html"
    PDF = "pdf"
    JSON = "json"


def report_dir_name(campaign_id: int, campaign_name: str) -> str:
    """`campaign-<id>-<name>`, safe as a directory name whatever the campaign is called."""
    return f"campaign-{campaign_id}-{file_stem(campaign_name)}"


def render(report: Report, report_format: ReportFormat) -> bytes:
    """The report's bytes in one format."""
    if report_format is ReportFormat.HTML:
        return render_html(report).encode()
    if report_format is ReportFormat.PDF:
        return render_pdf(report)
    return (json.dumps(report.document(), indent=2) + "\n").encode()


@dataclass(frozen=True)
class WrittenReport:
    """Where a report was written, its files, and whether its manifest is signed."""

    directory: Path
    files: list[Path]
    signed: bool


def write_report_dir(
    *,
    session: Session,
    report: Report,
    out_dir: Path,
    formats: list[ReportFormat],
    key: Ed25519PrivateKey | None,
) -> WrittenReport:
    """Write a built report in each format, with its campaign's data export, under out_dir/campaign-<id>-<name>/."""
    cover = report.cover
    directory = out_dir / report_dir_name(cover.campaign_id, cover.campaign_name)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for report_format in dict.fromkeys(formats):
        path = directory / f"report.{report_format.value}"
        path.write_bytes(render(report, report_format))
        files.append(path)
    exported = export_campaign(
        session=session, campaign_id=cover.campaign_id, findings=report.findings, out_dir=directory
    )
    files += exported.files
    write_manifest(
        report_dir=directory,
        files=files,
        about={
            "campaign_id": cover.campaign_id,
            "campaign_name": cover.campaign_name,
            "plan_digest": cover.plan_digest,
            "verdict": report.verdict.value,
            "interim": cover.interim,
            "generated_at": cover.generated_at,
            "export_left_out": exported.left_out,
        },
        key=key,
    )
    return WrittenReport(directory=directory, files=files, signed=key is not None)

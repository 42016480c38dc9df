"""A report directory: the report in each asked-for format, the raw-data export beside it, and the manifest."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign
from soak.report.builder import build_report
from soak.report.export import export_campaign
from soak.report.html import render_html
from soak.report.manifest import write_manifest
from soak.report.model import Report
from soak.report.pdf import render_pdf

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ReportFormat(StrEnum):
    """A format the report is written in."""

    HTML = "html"
    PDF = "pdf"
    JSON = "json"


def safe_name(text: str, *, fallback: str = "campaign") -> str:
    """A file-name part from free text: letters, digits, dot, dash and underscore only, never `.` or `..`."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")[:80]
    return cleaned or fallback


def report_dir_name(campaign: Campaign) -> str:
    """`campaign-<id>-<name>`, safe as a directory name whatever the campaign is called."""
    return f"campaign-{campaign.id}-{safe_name(campaign.name)}"


def render(report: Report, report_format: ReportFormat) -> bytes:
    """The report's bytes in one format."""
    if report_format is ReportFormat.HTML:
        return render_html(report).encode()
    if report_format is ReportFormat.PDF:
        return render_pdf(report)
    return (json.dumps(report.document(), indent=2) + "\n").encode()


@dataclass(frozen=True)
class WrittenReport:
    """Where a report was written and what it says."""

    directory: Path
    files: list[Path]
    report: Report
    signed: bool


def write_report(
    *,
    session: Session,
    campaign: Campaign,
    out_dir: Path,
    formats: list[ReportFormat],
    key: Ed25519PrivateKey | None,
) -> WrittenReport:
    """Build the report, write it in each format with the data export under out_dir/campaign-<id>-<name>/."""
    report = build_report(session=session, campaign=campaign)
    directory = out_dir / report_dir_name(campaign)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for report_format in dict.fromkeys(formats):
        path = directory / f"report.{report_format.value}"
        path.write_bytes(render(report, report_format))
        files.append(path)
    files += export_campaign(
        session=session,
        campaign_id=campaign.id,
        findings=report.findings,
        out_dir=directory,
    )
    write_manifest(
        report_dir=directory,
        files=files,
        about={
            "campaign_id": campaign.id,
            "campaign_name": campaign.name,
            "plan_digest": campaign.plan_digest,
            "verdict": report.verdict.value,
            "interim": report.cover.interim,
            "generated_at": report.cover.generated_at,
        },
        key=key,
    )
    return WrittenReport(directory=directory, files=files, report=report, signed=key is not None)

"""Findings: one row per (campaign, device, kind, subject), updated as evidence grows."""

from __future__ import annotations

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from soak.analysis.series import Detection
from soak.db import utcnow
from soak.findings.models import Finding
from soak.findings.schemas import FindingOut
from soak.nodes.models import Device

# Most severe first: on-call reads from the top.
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def upsert_finding(*, session: Session, campaign_id: int, device_id: int | None, detection: Detection) -> Finding:
    """Create the finding, or update the existing one with the newest evidence; never duplicate it."""
    device_clause = Finding.device_id.is_(None) if device_id is None else Finding.device_id == device_id
    finding = session.scalar(
        select(Finding).where(
            Finding.campaign_id == campaign_id,
            device_clause,
            Finding.kind == detection.kind,
            Finding.subject == detection.subject,
        )
    )
    if finding is None:
        finding = Finding(campaign_id=campaign_id, device_id=device_id, kind=detection.kind, subject=detection.subject)
        session.add(finding)
    finding.severity = detection.severity
    finding.onset_s = detection.onset_s
    finding.detected_s = detection.detected_s
    finding.last_seen_s = detection.last_seen_s
    finding.explanation = detection.explanation
    finding.evidence = dict(detection.evidence)
    finding.updated_at = utcnow()
    session.commit()
    return finding


def list_findings(*, session: Session, campaign_id: int) -> list[FindingOut]:
    """A campaign's findings, most severe first, with device names."""
    rows = session.execute(
        select(Finding, Device.name)
        .outerjoin(Device, Finding.device_id == Device.id)
        .where(Finding.campaign_id == campaign_id)
        .order_by(case(SEVERITY_RANK, value=Finding.severity, else_=len(SEVERITY_RANK)), Finding.onset_s)
    ).all()
    return [
        FindingOut(
            id=finding.id,
            campaign_id=finding.campaign_id,
            device=device_name,
            kind=finding.kind,
            subject=finding.subject,
            severity=finding.severity,
            onset_s=finding.onset_s,
            detected_s=finding.detected_s,
            last_seen_s=finding.last_seen_s,
            explanation=finding.explanation,
            evidence=finding.evidence,
        )
        for finding, device_name in rows
    ]

"""Runs every detector over a stored campaign, imported or run by soak, outside the scheduler."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from soak.analysis.engine import run_detection
from soak.campaigns.models import Campaign
from soak.campaigns.service import CampaignNotFound
from soak.findings.schemas import FindingOut
from soak.findings.service import list_findings
from soak.plan import parse_plan


class NothingToAnalyze(ValueError):
    """The campaign never started, so it holds no telemetry."""


def find_campaign(*, session: Session, reference: str) -> Campaign:
    """A campaign by id, or else by name (the newest of that name); CampaignNotFound names what was tried."""
    if reference.isdigit():
        campaign = session.get(Campaign, int(reference))
        if campaign is not None:
            return campaign
    named = session.scalar(select(Campaign).where(Campaign.name == reference).order_by(Campaign.id.desc()))
    if named is None:
        raise CampaignNotFound(f"no campaign has the id or the name {reference!r}; `soak campaigns` lists them")
    return named


def analyze_campaign(*, session: Session, campaign: Campaign) -> list[FindingOut]:
    """Update the campaign's findings from all its stored telemetry and return them, most severe first."""
    if campaign.started_at is None:
        raise NothingToAnalyze(f"campaign {campaign.id} ({campaign.name!r}) has not started: it holds no telemetry")
    run_detection(
        session=session,
        campaign_id=campaign.id,
        plan=parse_plan(campaign.plan),
        start_s=campaign.started_at.timestamp(),
        end_s=campaign.ended_at.timestamp() if campaign.ended_at is not None else time.time(),
    )
    session.commit()
    return list_findings(session=session, campaign_id=campaign.id)

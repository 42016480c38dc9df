"""Campaign queries and state changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign, CampaignCommand, CampaignState, WorkloadRun
from soak.db import utcnow
from soak.findings.models import Finding
from soak.nodes.models import Device
from soak.plan import Plan
from soak.telemetry.models import Event, Sample
from soak.telemetry.rollups import with_rollups_settled


class CampaignNotFound(LookupError):
    """No campaign with that id."""


class InvalidTransition(ValueError):
    """The campaign's state does not allow the requested command."""


def create_campaign(*, session: Session, plan: Plan) -> Campaign:
    """Store a validated plan as a pending campaign."""
    campaign = Campaign(
        name=plan.name,
        plan=plan.model_dump(mode="json"),
        plan_digest=plan.digest(),
        state=CampaignState.PENDING,
    )
    session.add(campaign)
    session.commit()
    return campaign


def get_campaign(*, session: Session, campaign_id: int) -> Campaign:
    """One campaign, or CampaignNotFound."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    return campaign


def list_campaigns(*, session: Session, limit: int = 100) -> list[Campaign]:
    """Newest campaigns first."""
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def pending_campaigns(*, session: Session) -> list[Campaign]:
    """Campaigns waiting for the scheduler, oldest first."""
    return list(session.scalars(select(Campaign).where(Campaign.state == CampaignState.PENDING).order_by(Campaign.id)))


def orphaned_campaigns(*, session: Session) -> list[Campaign]:
    """Running or paused campaigns, oldest first: after a controller restart, the ones to resume."""
    statement = select(Campaign).where(Campaign.state.in_([CampaignState.RUNNING, CampaignState.PAUSED]))
    return list(session.scalars(statement.order_by(Campaign.id)))


def request_command(*, session: Session, campaign_id: int, command: CampaignCommand) -> Campaign:
    """Ask the scheduler to stop, pause or resume; a pending campaign stops at once."""
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    state = CampaignState(campaign.state)
    if state.finished:
        raise InvalidTransition(f"campaign {campaign_id} is already {state.value}; nothing to {command.value}")
    if command is CampaignCommand.STOP and state is CampaignState.PENDING:
        set_state(
            session=session,
            campaign=campaign,
            state=CampaignState.STOPPED,
            reason="stopped before it started",
        )
        return campaign
    allowed = {
        CampaignCommand.STOP: {CampaignState.RUNNING, CampaignState.PAUSED},
        CampaignCommand.PAUSE: {CampaignState.RUNNING},
        CampaignCommand.RESUME: {CampaignState.PAUSED},
    }
    if state not in allowed[command]:
        raise InvalidTransition(f"campaign {campaign_id} is {state.value}; it cannot {command.value} now")
    campaign.command = command.value
    session.commit()
    return campaign


def take_command(*, session: Session, campaign_id: int) -> CampaignCommand | None:
    """Read and clear the campaign's pending command."""
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    if campaign.command is None:
        return None
    command = CampaignCommand(campaign.command)
    campaign.command = None
    session.commit()
    return command


def set_state(
    *,
    session: Session,
    campaign: Campaign,
    state: CampaignState,
    reason: str | None = None,
    paused_s: float = 0.0,
) -> None:
    """Move a campaign to a new state, stamping its start and end."""
    campaign.state = state.value
    now = utcnow()
    if state is CampaignState.RUNNING and campaign.started_at is None:
        campaign.started_at = now
    if state.finished:
        campaign.ended_at = now
        campaign.command = None
    if reason is not None:
        campaign.reason = reason
    campaign.paused_s = paused_s
    session.commit()


def start_run(*, session: Session, campaign_id: int, device_id: int, workload: str, started_s: float) -> int:
    """Record that a workload slot began on a device; returns the run id."""
    run = WorkloadRun(campaign_id=campaign_id, device_id=device_id, workload=workload, started_s=started_s)
    session.add(run)
    session.commit()
    return run.id


def finish_run(*, session: Session, run_id: int, ended_s: float, summary: dict[str, float | int | str]) -> None:
    """Record how a workload slot went."""
    session.execute(update(WorkloadRun).where(WorkloadRun.id == run_id).values(ended_s=ended_s, summary=summary))
    session.commit()


def finish_open_runs(*, session: Session, campaign_id: int, ended_s: float, reason: str) -> int:
    """End every run of a campaign still open (an earlier controller process started it); returns how many."""
    result = session.execute(
        update(WorkloadRun)
        .where(WorkloadRun.campaign_id == campaign_id, WorkloadRun.ended_s.is_(None))
        .values(ended_s=ended_s, summary={"error": reason})
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def elapsed_s(campaign: Campaign, now: datetime | None = None) -> float:
    """Seconds of campaign time so far, pauses excluded."""
    if campaign.started_at is None:
        return 0.0
    end = campaign.ended_at or now or utcnow()
    return max(0.0, (end - campaign.started_at).total_seconds() - campaign.paused_s)


def samples_stored(*, session: Session, campaign_id: int) -> int:
    """The campaign's samples: the rollups' tally, plus those stored past their watermark (seconds' worth)."""

    def tallied_and_past(watermark_id: int) -> int:
        tallied = session.scalar(select(Campaign.samples_rolled_up).where(Campaign.id == campaign_id)) or 0
        recent = session.scalar(
            select(func.count()).select_from(Sample).where(Sample.id > watermark_id, Sample.campaign_id == campaign_id)
        )
        return int(tallied) + int(recent or 0)

    return with_rollups_settled(session=session, read=tallied_and_past)


def progress_counts(*, session: Session, campaign_id: int) -> dict[str, int]:
    """Samples, events, findings and reserved devices of a campaign."""

    def count(statement: object) -> int:
        return int(session.scalar(statement) or 0)  # type: ignore[call-overload]

    return {
        "samples_stored": samples_stored(session=session, campaign_id=campaign_id),
        "events_stored": count(select(func.count()).select_from(Event).where(Event.campaign_id == campaign_id)),
        "findings": count(select(func.count()).select_from(Finding).where(Finding.campaign_id == campaign_id)),
        "devices_reserved": count(select(func.count()).select_from(Device).where(Device.campaign_id == campaign_id)),
        "devices_running": count(
            select(func.count(func.distinct(WorkloadRun.device_id))).where(
                WorkloadRun.campaign_id == campaign_id, WorkloadRun.ended_s.is_(None)
            )
        ),
    }

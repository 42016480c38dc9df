"""Campaign routes: create, list, show, stop/pause/resume, findings, events, series."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status

from soak.auth.schemas import Outcome
from soak.auth.service import record
from soak.campaigns import service
from soak.campaigns.models import CampaignCommand, CampaignState
from soak.campaigns.schemas import CampaignId, CampaignOut, CampaignProgress
from soak.deps import ERRORS, OperatorDep, SessionDep, Viewer
from soak.findings.schemas import FindingOut
from soak.findings.service import list_findings
from soak.plan import parse_plan
from soak.telemetry.schemas import METRIC_PATTERN, NAME_PATTERN
from soak.telemetry.series import BadRange, SeriesOut, UnknownDevice, read_series
from soak.telemetry.service import list_events

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"], responses=ERRORS)
HOUR_S = 3600


def _campaign_or_404(session: SessionDep, campaign_id: int) -> Any:
    try:
        return service.get_campaign(session=session, campaign_id=campaign_id)
    except service.CampaignNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.post("", status_code=status.HTTP_201_CREATED)
def create_campaign(
    session: SessionDep, principal: OperatorDep, plan: Annotated[dict[str, Any], Body(description="a campaign plan")]
) -> CampaignOut:
    """Validate a plan and queue it; a bad plan is answered 422 naming each bad field."""
    campaign = service.create_campaign(session=session, plan=parse_plan(plan))
    record(session=session, principal=principal, action="campaign.create", outcome=Outcome.OK, campaign_id=campaign.id)
    return CampaignOut.model_validate(campaign)


@router.get("", dependencies=[Viewer])
def list_campaigns(session: SessionDep) -> list[CampaignOut]:
    """Newest first."""
    return [CampaignOut.model_validate(c) for c in service.list_campaigns(session=session)]


@router.get("/{campaign_id}", dependencies=[Viewer])
def get_campaign(session: SessionDep, campaign_id: CampaignId) -> CampaignProgress:
    """A campaign with its progress."""
    campaign = _campaign_or_404(session, campaign_id)
    plan = parse_plan(campaign.plan)
    elapsed_s = service.elapsed_s(campaign)
    remaining_s = 0.0 if CampaignState(campaign.state).finished else plan.duration.total_seconds() - elapsed_s
    return CampaignProgress(
        campaign=CampaignOut.model_validate(campaign),
        elapsed_s=elapsed_s,
        remaining_s=max(0.0, remaining_s),
        **service.progress_counts(session=session, campaign_id=campaign_id),
    )


@router.post("/{campaign_id}/{command}")
def command_campaign(
    session: SessionDep, principal: OperatorDep, campaign_id: CampaignId, command: CampaignCommand
) -> CampaignOut:
    """Stop, pause or resume."""
    _campaign_or_404(session, campaign_id)
    action = f"campaign.{command.value}"
    try:
        campaign = service.request_command(session=session, campaign_id=campaign_id, command=command)
    except service.InvalidTransition as error:
        record(
            session=session,
            principal=principal,
            action=action,
            outcome=Outcome.CONFLICT,
            campaign_id=campaign_id,
            detail=str(error),
        )
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    record(session=session, principal=principal, action=action, outcome=Outcome.OK, campaign_id=campaign_id)
    return CampaignOut.model_validate(campaign)


@router.get("/{campaign_id}/findings", dependencies=[Viewer])
def campaign_findings(session: SessionDep, campaign_id: CampaignId) -> list[FindingOut]:
    """Most severe first."""
    _campaign_or_404(session, campaign_id)
    return list_findings(session=session, campaign_id=campaign_id)


@router.get("/{campaign_id}/events", dependencies=[Viewer])
def campaign_events(
    session: SessionDep, campaign_id: CampaignId, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
) -> list[dict[str, Any]]:
    """Driver errors, worker crashes and hangs, SDC: oldest first."""
    _campaign_or_404(session, campaign_id)
    return [
        {
            "time_s": e.time_s,
            "device_id": e.device_id,
            "kind": e.kind,
            "severity": e.severity,
            "code": e.code,
            "message": e.message,
            "raw": e.raw,
        }
        for e in list_events(session=session, campaign_id=campaign_id, limit=limit)
    ]


@router.get("/{campaign_id}/series", dependencies=[Viewer])
def campaign_series(
    session: SessionDep,
    campaign_id: CampaignId,
    metric: Annotated[
        str, Query(max_length=96, pattern=METRIC_PATTERN, description="e.g. throughput.gemm or device.temperature_c")
    ],
    device: Annotated[str, Query(pattern=NAME_PATTERN, description="soak's device name, e.g. gpu-07/cuda3")],
    from_s: Annotated[
        float | None, Query(alias="from", description="epoch seconds; default: the hour the campaign started in")
    ] = None,
    to_s: Annotated[float | None, Query(alias="to", description="epoch seconds; default: campaign end or now")] = None,
    step_s: Annotated[float | None, Query(alias="step", description="seconds per point; default: about 1000")] = None,
) -> SeriesOut:
    """One metric of one device: raw samples, or per step their mean, min, max and count."""
    campaign = _campaign_or_404(session, campaign_id)
    plan = parse_plan(campaign.plan)
    start_s = campaign.started_at.timestamp() if campaign.started_at is not None else time.time()
    # From the hour the campaign started in, so that hourly and minute rollups can answer the default range;
    # there are no samples of the campaign before its start, so the earlier part adds no points.
    start_s -= start_s % HOUR_S
    end_s = campaign.ended_at.timestamp() if campaign.ended_at is not None else time.time()
    try:
        return read_series(
            session=session,
            campaign_id=campaign_id,
            device=device,
            metric=metric,
            from_s=start_s if from_s is None else from_s,
            to_s=end_s if to_s is None else to_s,
            step_s=step_s,
            sample_interval_s=plan.sample_interval.total_seconds(),
        )
    except UnknownDevice as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except BadRange as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None

"""Report routes: the report of a campaign as HTML, PDF or JSON, built from the store when asked."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from soak.campaigns import service
from soak.campaigns.schemas import CampaignId
from soak.deps import ERRORS, SessionDep, Viewer
from soak.plan import PlanError
from soak.report.builder import build_report
from soak.report.bundle import ReportFormat, render, report_dir_name

router = APIRouter(prefix="/api/v1/campaigns", tags=["reports"], responses=ERRORS)
MEDIA_TYPES = {
    ReportFormat.HTML: "text/html; charset=utf-8",
    ReportFormat.PDF: "application/pdf",
    ReportFormat.JSON: "application/json",
}


@router.get(
    "/{campaign_id}/report.{report_format}",
    dependencies=[Viewer],
    response_class=Response,
    responses={200: {"description": "the report", "content": {media: {} for media in MEDIA_TYPES.values()}}},
)
def get_report(session: SessionDep, campaign_id: CampaignId, report_format: ReportFormat) -> Response:
    """The campaign's report (interim while it runs); the PDF downloads, HTML and JSON display."""
    try:
        campaign = service.get_campaign(session=session, campaign_id=campaign_id)
    except service.CampaignNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    try:
        report = build_report(session=session, campaign=campaign)
    except PlanError as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"campaign {campaign_id}: its stored plan no longer validates: {error}"
        ) from None
    disposition = "attachment" if report_format is ReportFormat.PDF else "inline"
    filename = f"{report_dir_name(campaign.id, campaign.name)}.{report_format.value}"
    return Response(
        content=render(report, report_format),
        media_type=MEDIA_TYPES[report_format],
        headers={"Content-Disposition": f'{disposition}; filename="{filename}"'},
    )

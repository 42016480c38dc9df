"""Builds the report's document from the store: cover, verdict, per-device figures, findings, costs, plots."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from soak import __version__
from soak.auth.service import audit_entries
from soak.campaigns.models import Campaign
from soak.findings.service import SEVERITY_RANK
from soak.offline.importer import is_imported
from soak.report.figures import device_figures, workload_unit
from soak.report.methodology import methodology
from soak.report.model import CampaignAction, Cover, DeviceFacts, FindingEntry, FleetGroup, Report
from soak.report.plots import all_plots
from soak.report.store import CampaignData, load_campaign
from soak.report.tco import cost_inputs
from soak.report.verdict import SECTION_OF_KIND, judge, verdict_reason


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment is not None else None


def cover(data: CampaignData) -> Cover:
    """Campaign identity, dates and the fleet, grouped by vendor and model."""
    campaign = data.campaign
    devices = [
        DeviceFacts(
            name=device.name,
            node=node.name,
            vendor=device.vendor,
            model=device.model,
            backend=device.backend,
            uuid=device.uuid,
            serial=device.serial,
            driver_version=device.driver_version,
            firmware_version=device.firmware_version,
            memory_total_bytes=device.memory_total_bytes,
            simulated=device.simulated,
            software=data.software(device.id),
        )
        for device, node in data.devices
    ]
    grouped: dict[tuple[str, str], list[DeviceFacts]] = defaultdict(list)
    for facts in devices:
        grouped[(facts.vendor, facts.model)].append(facts)
    fleet = []
    for (vendor, model), members in sorted(grouped.items()):
        software: dict[str, set[str]] = defaultdict(set)
        for member in members:
            for component, version in member.software.items():
                software[component].add(version)
        fleet.append(
            FleetGroup(
                vendor=vendor,
                model=model,
                devices=len(members),
                nodes=sorted({member.node for member in members}),
                drivers=sorted({member.driver_version or "not reported" for member in members}),
                firmware=sorted({member.firmware_version or "not reported" for member in members}),
                software={component: sorted(versions) for component, versions in sorted(software.items())},
            )
        )
    return Cover(
        campaign_id=campaign.id,
        campaign_name=campaign.name,
        state=campaign.state,
        interim=data.interim,
        imported=is_imported(campaign),
        started_at=_iso(campaign.started_at),
        ended_at=_iso(campaign.ended_at),
        duration_h=(data.end_s - data.start_s) / 3600.0,
        planned_duration_h=data.plan.duration.total_seconds() / 3600.0,
        plan_digest=campaign.plan_digest,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        soak_version=__version__,
        nodes=sorted({node.name for _, node in data.devices}),
        fleet=fleet,
        devices=devices,
    )


def build_report(*, session: Session, campaign: Campaign, with_plots: bool = True) -> Report:
    """The report of one campaign, finished, running (interim) or imported, from what the store holds now.

    Without plots (what a comparison needs) it takes a fraction of the time; its `plots` lists are then empty.
    """
    data = load_campaign(session=session, campaign=campaign)
    figures = [device_figures(data, device, node) for device, node in data.devices]
    findings = [
        FindingEntry(
            **finding.model_dump(),
            section=SECTION_OF_KIND.get(finding.kind),
            onset_h=(finding.onset_s - data.start_s) / 3600.0,
            detected_h=(finding.detected_s - data.start_s) / 3600.0,
        )
        for finding in data.findings
    ]
    # What breaks a criterion first, then notes; each in the order it began.
    findings.sort(key=lambda finding: (SEVERITY_RANK.get(finding.severity, len(SEVERITY_RANK)), finding.onset_s))
    verdict, criteria = judge(
        acceptance=data.plan.acceptance, devices=figures, findings=data.findings, measured=bool(data.summaries)
    )
    plots, not_plotted = all_plots(data, figures, findings) if with_plots else ([], [])
    return Report(
        cover=cover(data),
        verdict=verdict,
        verdict_reason=verdict_reason(
            verdict,
            criteria,
            interim=data.interim,
            measured=bool(data.summaries),
            ran_share=(data.end_s - data.start_s) / data.plan.duration.total_seconds(),
        ),
        criteria=criteria,
        devices=figures,
        findings=findings,
        actions=[
            CampaignAction(
                at=entry.at.isoformat(timespec="seconds"),
                actor=entry.actor,
                role=entry.role,
                action=entry.action,
                outcome=entry.outcome,
                detail=entry.detail,
            )
            for entry in audit_entries(session=session, campaign_id=campaign.id)
        ],
        cost=cost_inputs(
            figures,
            campaign_hours=(data.end_s - data.start_s) / 3600.0,
            node_losses=sum(finding.kind == "node_lost" for finding in data.findings),
        ),
        methodology=methodology(data.plan, unit_of=workload_unit),
        plots=plots,
        plots_not_measured=not_plotted,
    )

"""Runs every detector over a campaign's stored telemetry and keeps its findings current."""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from soak.analysis.events import EventRecord, detect_event_findings
from soak.analysis.leak import detect_leak
from soak.analysis.series import Detection, Series
from soak.analysis.throughput import detect_throughput_drop
from soak.campaigns.models import WorkloadRun
from soak.findings.service import upsert_finding
from soak.nodes.models import Device
from soak.plan import Plan
from soak.telemetry import service as telemetry
from soak.workloads.registry import load_workload

log = logging.getLogger(__name__)

# The last seconds of a slot straddle the switch to the next workload; they belong to neither.
RUN_TAIL_S = 3.0
LEAK_METRICS = {"device.memory_used_bytes": "device memory", "process.rss_bytes": "worker host RSS"}


def _steady_windows(
    session: Session, campaign_id: int, device_id: int, plan: Plan
) -> dict[str, list[tuple[float, float]]]:
    """Per workload, the stretches of its slots after the slot warm-up: where clocks and memory have settled."""
    head_s = plan.slot_warmup.total_seconds()
    windows: dict[str, list[tuple[float, float]]] = {}
    statement = select(WorkloadRun).where(WorkloadRun.campaign_id == campaign_id, WorkloadRun.device_id == device_id)
    for run in session.scalars(statement):
        ended_s = run.ended_s if run.ended_s is not None else float("inf")
        windows.setdefault(run.workload, []).append((run.started_s + head_s, ended_s - RUN_TAIL_S))
    return windows


def _within(series: Series, windows: list[tuple[float, float]]) -> Series:
    keep = np.zeros(len(series), dtype=bool)
    for start_s, end_s in windows:
        keep |= (series.time_s >= start_s) & (series.time_s <= end_s)
    return Series(series.time_s[keep], series.values[keep])


def _leak(
    session: Session,
    campaign_id: int,
    device: Device,
    plan: Plan,
    warmup_end_s: float,
    runs: dict[str, list[tuple[float, float]]],
) -> None:
    """Memory is compared within each workload's slots, so a mix that holds different amounts is not a leak."""
    for metric, subject in LEAK_METRICS.items():
        full = telemetry.series(
            session=session, campaign_id=campaign_id, device_id=device.id, metric=metric, start_s=warmup_end_s
        ).finite()
        strongest: Detection | None = None
        for workload, windows in runs.items():
            detection = detect_leak(
                _within(full, windows),
                warmup_end_s=warmup_end_s,
                max_rate_mib_per_hour=plan.acceptance.max_leak_rate_mib_per_hour,
                min_growth_mib=plan.acceptance.min_leak_growth_mib,
                significance=plan.acceptance.significance,
                capacity_bytes=float(device.memory_total_bytes)
                if metric.startswith("device.") and device.memory_total_bytes
                else None,
                subject=f"{subject} during {workload}",
            )
            if detection is not None and (
                strongest is None
                or float(detection.evidence["rate_mib_per_hour"]) > float(strongest.evidence["rate_mib_per_hour"])
            ):
                strongest = detection
        if strongest is not None:
            upsert_finding(
                session=session,
                campaign_id=campaign_id,
                device_id=device.id,
                subject=metric,
                detection=strongest,
            )


def _unit(series: str) -> str:
    """The unit of a series: its workload's, found by name, or by name with the plan-entry qualifier removed."""
    for name in (series, series.rsplit("_", 1)[0]):
        try:
            return load_workload(name).unit
        except KeyError:
            continue
    return "units/s"


def _throughput(
    session: Session,
    campaign_id: int,
    device: Device,
    plan: Plan,
    warmup_end_s: float,
    runs: dict[str, list[tuple[float, float]]],
) -> None:
    """Sustained throughput only: the burst at the start of each slot, before the power cap bites, is left out."""
    for metric in telemetry.device_metrics(
        session=session, campaign_id=campaign_id, device_id=device.id, prefix="throughput."
    ):
        workload = metric.removeprefix("throughput.")
        unit = _unit(workload)
        full = telemetry.series(
            session=session, campaign_id=campaign_id, device_id=device.id, metric=metric, start_s=warmup_end_s
        ).finite()
        detection = detect_throughput_drop(
            _within(full, runs.get(workload, [])),
            warmup_end_s=warmup_end_s,
            min_ratio=plan.acceptance.min_sustained_throughput_ratio,
            significance=plan.acceptance.significance,
            unit=unit,
            subject=f"{workload} throughput",
        )
        if detection is not None:
            upsert_finding(
                session=session,
                campaign_id=campaign_id,
                device_id=device.id,
                subject=metric,
                detection=detection,
            )


def _events(session: Session, campaign_id: int, plan: Plan, names: dict[int, str]) -> None:
    ids = {name: device_id for device_id, name in names.items()}
    records = [
        EventRecord(
            device=names.get(event.device_id) if event.device_id is not None else None,
            time_s=event.time_s,
            kind=event.kind,
            severity=event.severity,
            code=event.code,
        )
        for event in telemetry.list_events(session=session, campaign_id=campaign_id, limit=1_000_000)
    ]
    limits = plan.acceptance
    detections = detect_event_findings(
        records,
        max_sdc_events=limits.max_sdc_events,
        max_warn_driver_errors=limits.max_driver_errors.warn,
        max_fail_driver_errors=limits.max_driver_errors.fail,
    )
    for (device_name, subject), detection in detections.items():
        upsert_finding(
            session=session,
            campaign_id=campaign_id,
            device_id=ids.get(device_name) if device_name is not None else None,
            subject=subject,
            detection=detection,
        )


def run_detection(*, session: Session, campaign_id: int, plan: Plan, start_s: float) -> None:
    """Update the campaign's findings from everything stored so far."""
    warmup_end_s = start_s + plan.warmup.total_seconds()
    device_ids = select(WorkloadRun.device_id).where(WorkloadRun.campaign_id == campaign_id).distinct()
    devices = list(session.scalars(select(Device).where(Device.id.in_(device_ids)).order_by(Device.name)))
    for device in devices:
        runs = _steady_windows(session, campaign_id, device.id, plan)
        _throughput(session, campaign_id, device, plan, warmup_end_s, runs)
        _leak(session, campaign_id, device, plan, warmup_end_s, runs)
    _events(session, campaign_id, plan, {device.id: device.name for device in devices})

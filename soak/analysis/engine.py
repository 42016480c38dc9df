"""Runs every detector over a campaign's stored telemetry and keeps its findings current."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from soak.analysis.detectors import detect_device, detect_fleet
from soak.analysis.drift import THROUGHPUT_PREFIX
from soak.analysis.leak import BLOCK_S as LEAK_BLOCK_S
from soak.analysis.minute_series import BUCKET_S, minute_series
from soak.analysis.series import Detection, Series
from soak.analysis.telemetry import DeviceTelemetry, EventRecord, campaign_block_s
from soak.campaigns.models import WorkloadRun
from soak.findings.service import upsert_finding
from soak.nodes.models import Device, Node
from soak.plan import Acceptance, Plan
from soak.telemetry import service as telemetry

log = logging.getLogger(__name__)

# The last seconds of a slot straddle the switch to the next workload; they belong to neither.
RUN_TAIL_S = 3.0


def _steady_windows(
    session: Session, campaign_id: int, device_id: int, plan: Plan, end_s: float
) -> dict[str, list[tuple[float, float]]]:
    """Per workload series, the stretches of its slots after the slot warm-up: where clocks and memory settled."""
    head_s = plan.slot_warmup.total_seconds()
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    statement = select(WorkloadRun).where(WorkloadRun.campaign_id == campaign_id, WorkloadRun.device_id == device_id)
    for run in session.scalars(statement.order_by(WorkloadRun.started_s)):
        ended_s = run.ended_s if run.ended_s is not None else end_s
        windows[run.workload].append((run.started_s + head_s, ended_s - RUN_TAIL_S))
    return dict(windows)


def _events_by_device(
    session: Session, campaign_id: int, devices: list[tuple[Device, Node]]
) -> dict[int, list[EventRecord]]:
    """Each device's events, with its node's own events (a lost node) given to every device on it."""
    names = {device.id: device.name for device, _ in devices}
    on_node: dict[int, list[int]] = defaultdict(list)
    for device, node in devices:
        on_node[node.id].append(device.id)
    grouped: dict[int, list[EventRecord]] = defaultdict(list)
    for event in telemetry.list_events(session=session, campaign_id=campaign_id, limit=None):
        record = EventRecord(
            device=names.get(event.device_id) if event.device_id is not None else None,
            time_s=event.time_s,
            kind=event.kind,
            severity=event.severity,
            code=event.code,
            message=event.message,
            raw=event.raw,
        )
        if event.device_id is not None:
            grouped[event.device_id].append(record)
        elif event.node_id is not None:
            for device_id in on_node.get(event.node_id, []):
                grouped[device_id].append(record)
    return grouped


def shortest_block_s(plan: Plan) -> float:
    """The shortest block any detector judges this campaign on (leak, drift and stack-change blocks, scaled)."""
    full_scale_s = min(LEAK_BLOCK_S, plan.acceptance.throughput.block_s, plan.acceptance.stack_change.block_s)
    planned_span_s = max((plan.duration - plan.warmup).total_seconds(), 0.0)
    return campaign_block_s(
        full_scale_s, planned_span_s=planned_span_s, sample_interval_s=plan.sample_interval.total_seconds()
    )


def reads_rollups(plan: Plan) -> bool:
    """Whether detection reads the campaign from minute rollups: when its blocks span whole minutes (campaigns
    planned to run 4.8 h or more after warm-up) and a minute holds several samples. Shorter campaigns judge blocks of
    seconds, which only raw samples resolve."""
    return shortest_block_s(plan) >= BUCKET_S and plan.sample_interval.total_seconds() < BUCKET_S


def fleet_telemetry(
    *, session: Session, campaign_id: int, plan: Plan, start_s: float, end_s: float
) -> Iterator[DeviceTelemetry]:
    """Every device that ran in the campaign, or is held for it without having run yet (its node has not joined
    the Ray cluster), as the detectors read it, read one at a time."""
    ran = select(WorkloadRun.device_id).where(WorkloadRun.campaign_id == campaign_id)
    statement = (
        select(Device, Node)
        .join(Node, Device.node_id == Node.id)
        .where(or_(Device.id.in_(ran), Device.campaign_id == campaign_id))
    )
    devices = [(device, node) for device, node in session.execute(statement.order_by(Device.name))]
    events = _events_by_device(session, campaign_id, devices)

    def stored_series(device_id: int) -> dict[str, Series]:
        if reads_rollups(plan):
            # Each metric from the source its detectors need: soak/analysis/minute_series.py says which and why.
            return minute_series(session=session, campaign_id=campaign_id, device_id=device_id)
        return telemetry.device_series(session=session, campaign_id=campaign_id, device_id=device_id)

    for device, node in devices:
        yield DeviceTelemetry(
            device=device.name,
            node=node.name,
            vendor=device.vendor,
            model=device.model,
            memory_total_bytes=float(device.memory_total_bytes) if device.memory_total_bytes else None,
            start_s=start_s,
            warmup_end_s=start_s + plan.warmup.total_seconds(),
            end_s=end_s,
            sample_interval_s=plan.sample_interval.total_seconds(),
            series=stored_series(device.id),
            events=events.get(device.id, []),
            steady_windows=_steady_windows(session, campaign_id, device.id, plan, end_s),
            planned_end_s=start_s + plan.duration.total_seconds(),
        )


def load_fleet(
    *, session: Session, campaign_id: int, plan: Plan, start_s: float, end_s: float
) -> list[DeviceTelemetry]:
    """Every device that ran in the campaign, as the detectors read it, all at once."""
    return list(fleet_telemetry(session=session, campaign_id=campaign_id, plan=plan, start_s=start_s, end_s=end_s))


def run_detection(*, session: Session, campaign_id: int, plan: Plan, start_s: float, end_s: float) -> int:
    """Update the campaign's findings from everything stored up to end_s; return how many detections held.

    Devices are read and judged one at a time, keeping only their throughput for the comparison across peers (all
    detect_fleet reads): a pass over weeks of 1 Hz telemetry holds one device's series at a time, not the fleet's.
    """
    detections: list[Detection] = []
    peers: list[DeviceTelemetry] = []
    for device in fleet_telemetry(session=session, campaign_id=campaign_id, plan=plan, start_s=start_s, end_s=end_s):
        detections += detect_device(device, plan.acceptance)
        throughput = {name: series for name, series in device.series.items() if name.startswith(THROUGHPUT_PREFIX)}
        peers.append(dataclasses.replace(device, series=throughput))
    detections += detect_fleet(peers, plan.acceptance)
    return _store(session=session, campaign_id=campaign_id, detections=detections, devices=len(peers))


def detect_and_store(
    *, session: Session, campaign_id: int, fleet: list[DeviceTelemetry], acceptance: Acceptance
) -> int:
    """Run every detector over a fleet and keep the campaign's findings current; return how many detections held."""
    detections = [detection for device in fleet for detection in detect_device(device, acceptance)]
    detections += detect_fleet(fleet, acceptance)
    return _store(session=session, campaign_id=campaign_id, detections=detections, devices=len(fleet))


def _store(*, session: Session, campaign_id: int, detections: list[Detection], devices: int) -> int:
    """Upsert one finding per detection; how many there were."""
    named = {detection.device for detection in detections if detection.device is not None}
    ids = {
        name: device_id
        for name, device_id in session.execute(select(Device.name, Device.id).where(Device.name.in_(named)))
    }
    for detection in detections:
        upsert_finding(
            session=session,
            campaign_id=campaign_id,
            device_id=ids.get(detection.device) if detection.device is not None else None,
            detection=detection,
        )
    log.debug("campaign %s: %d detections over %d devices", campaign_id, len(detections), devices)
    return len(detections)

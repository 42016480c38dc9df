"""A simulated fleet written into the store as a finished campaign, with the findings its detectors produce.

Reports, their tests and the report benchmark read it exactly as they read a campaign soak ran. `raw` keeps every
sample (and rolls them up as the controller does); `hourly` writes only the hour rollups, as a weeks-long campaign
looks once its raw samples are retired; series are then answered only in whole-hour steps, which is what a report of
a campaign of three weeks or more asks for.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session

from soak.analysis.engine import detect_and_store
from soak.analysis.sim.fleet import MEMORY_TOTAL_BYTES, MODEL, VENDOR, plan_fleet, simulate_device
from soak.analysis.sim.spec import FleetSpec
from soak.analysis.telemetry import DeviceTelemetry
from soak.campaigns.models import Campaign, CampaignState, WorkloadRun
from soak.nodes.models import Device, Node
from soak.plan import parse_plan
from soak.telemetry.metric_names import metric_ids
from soak.telemetry.models import Event
from soak.telemetry.rollup_models import HourRollup
from soak.telemetry.rollups import roll_up_all
from soak.telemetry.writer import SampleRow, write_samples

# The driver and software a simulated H100 node would report, so that the report's fleet section is complete.
SIMULATED_DRIVER = "570.86.15"
SIMULATED_FIRMWARE = "96.00.9F.00.04"
SIMULATED_SOFTWARE = '{"stack": "CUDA 12.8", "torch": "2.13.0", "collectives": "nccl 2.26.2"}'
WRITE_BATCH_ROWS = 100_000


def simulated_plan(spec: FleetSpec, name: str) -> dict[str, object]:
    """The plan a campaign of this simulated fleet would have run under."""
    return {
        "name": name,
        "description": f"Simulated fleet (seed {spec.seed}): {spec.devices} devices for {spec.days:g} days.",
        "duration": spec.duration_s,
        "warmup": spec.warmup_s,
        "sample_interval": spec.sample_interval_s,
        "rotation": spec.duration_s / 2,
        "slot_warmup": 0,
        "devices": [{"vendor": VENDOR, "model": "H100", "count": spec.devices}],
        "workloads": [{"name": "train"}],
        "seed": spec.seed,
    }


def store_fleet(
    *, session: Session, spec: FleetSpec, name: str, resolution: Literal["raw", "hourly"] = "raw"
) -> Campaign:
    """Simulate the fleet, write it as a completed campaign, run every detector over it; the campaign."""
    plan = parse_plan(simulated_plan(spec, name))
    campaign = Campaign(
        name=name,
        plan=plan.model_dump(mode="json"),
        plan_digest=plan.digest(),
        state=CampaignState.COMPLETED,
        started_at=datetime.fromtimestamp(spec.start_s, UTC),
        ended_at=datetime.fromtimestamp(spec.end_s, UTC),
    )
    session.add(campaign)
    session.flush()
    fleet_plan = plan_fleet(spec)
    fleet: list[DeviceTelemetry] = []
    nodes: dict[str, int] = {}
    for index in range(spec.devices):
        telemetry = simulate_device(fleet_plan, index).telemetry
        if telemetry.node not in nodes:
            node = Node(name=f"{name}-{telemetry.node}", hostname=telemetry.node, inbox_dir="", sim_state_dir="")
            session.add(node)
            session.flush()
            nodes[telemetry.node] = node.id
        device = Device(
            node_id=nodes[telemetry.node],
            name=f"{name}-{telemetry.device}",
            backend="sim",
            index=index % spec.devices_per_node,
            vendor=VENDOR,
            model=MODEL,
            driver_version=SIMULATED_DRIVER,
            firmware_version=SIMULATED_FIRMWARE,
            memory_total_bytes=int(MEMORY_TOTAL_BYTES),
            simulated=True,
        )
        session.add(device)
        session.flush()
        _store_device(session, campaign.id, device, telemetry, resolution)
        # Judged under the names it is stored under, as the detectors see a campaign read back from the store.
        fleet.append(dataclasses.replace(telemetry, device=device.name, node=f"{name}-{telemetry.node}"))
    session.commit()
    if resolution == "raw":
        roll_up_all(session=session)
    detect_and_store(session=session, campaign_id=campaign.id, fleet=fleet, acceptance=plan.acceptance)
    session.commit()
    return campaign


def _store_device(
    session: Session, campaign_id: int, device: Device, telemetry: DeviceTelemetry, resolution: str
) -> None:
    """Runs, events and samples (or hour rollups) of one device."""
    for workload, windows in telemetry.steady_windows.items():
        for started_s, ended_s in windows:
            session.add(
                WorkloadRun(
                    campaign_id=campaign_id,
                    device_id=device.id,
                    workload=workload,
                    started_s=started_s,
                    ended_s=ended_s,
                    summary={},
                )
            )
    session.add(
        Event(
            campaign_id=campaign_id,
            node_id=device.node_id,
            device_id=device.id,
            time_s=telemetry.start_s,
            kind="software_stack",
            severity="info",
            message="stack CUDA 12.8, torch 2.13.0, collectives nccl 2.26.2",
            raw=SIMULATED_SOFTWARE,
        )
    )
    for event in telemetry.events:
        session.add(
            Event(
                campaign_id=campaign_id,
                node_id=device.node_id,
                device_id=device.id,
                time_s=event.time_s,
                kind=event.kind,
                severity=event.severity,
                code=event.code,
                message=event.message,
                raw=event.raw,
            )
        )
    if resolution == "raw":
        rows: list[SampleRow] = []
        for metric, series in telemetry.series.items():
            finite = series.finite()
            rows.extend(
                (campaign_id, device.node_id, device.id, metric, float(t), float(v))
                for t, v in zip(finite.time_s, finite.values, strict=True)
            )
            if len(rows) >= WRITE_BATCH_ROWS:
                write_samples(session=session, rows=rows)
                rows = []
        write_samples(session=session, rows=rows)
        return
    ids = metric_ids(session=session, names=telemetry.series)
    for metric, series in telemetry.series.items():
        finite = series.finite()
        if len(finite) == 0:
            continue
        buckets = (finite.time_s // HourRollup.bucket_length_s * HourRollup.bucket_length_s).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        ends = np.r_[starts[1:], len(finite)]
        counts = ends - starts
        session.execute(
            insert(HourRollup),
            [
                {
                    "campaign_id": campaign_id,
                    "device_id": device.id,
                    "metric_id": ids[metric],
                    "bucket_s": int(buckets[a]),
                    "count": int(n),
                    "min_value": float(np.min(finite.values[a:b])),
                    "max_value": float(np.max(finite.values[a:b])),
                    "sum_value": float(np.sum(finite.values[a:b])),
                    "last_time_s": float(finite.time_s[b - 1]),
                    "last_value": float(finite.values[b - 1]),
                }
                for a, b, n in zip(starts, ends, counts, strict=True)
            ],
        )

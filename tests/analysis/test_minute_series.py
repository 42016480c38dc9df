"""Detection over minute rollups: a campaign of days judged from its rollups finds what its raw samples show."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from soak.analysis.detectors import detect_device, detect_fleet
from soak.analysis.engine import load_fleet, reads_rollups, run_detection, shortest_block_s
from soak.analysis.minute_series import minute_series
from soak.analysis.series import Detection, Series
from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.analysis.telemetry import DeviceTelemetry
from soak.campaigns.models import Campaign
from soak.nodes.models import Device, Node
from soak.plan import Plan, parse_plan
from soak.telemetry.models import Sample
from soak.telemetry.rollups import roll_up, roll_up_all
from soak.telemetry.service import device_series
from soak.telemetry.writer import SampleRow, write_samples

# A day and a quarter at 20 s (three samples a minute), every device with a fault: a thermal interface that
# degrades (throttle bitmask, temperature margin), a throughput step, ECC errors with row remapping (counters) and a
# resident-memory leak under a garbage-collected sawtooth (its floor).
SPEC = FleetSpec(
    seed=7,
    devices=4,
    devices_per_node=4,
    days=1.25,
    sample_interval_s=20.0,
    only_classes=("rss_leak", "thermal_interface", "throughput_step", "hbm3_memory"),
    min_faulty_share=1.0,
    max_faulty_share=1.0,
)


# On a whole minute; ten minutes at 1 Hz.
MINUTE_START_S = 1_790_000_040.0
MINUTES = 10
TEMPERATURE = "device.temperature_c"
REASONS = "device.clock_event_reasons"


def stored_minutes(session: Session) -> tuple[int, int]:
    """Ten minutes of a device at 1 Hz: a temperature with 20 s missing in minute 3, and a throttle-reason bitmask
    that changes within minutes 5 and 6 and is steady in the others; the campaign and device ids."""
    campaign = Campaign(name="minutes", plan={}, plan_digest="", state="running")
    node = Node(name="n1", hostname="n1", inbox_dir="", sim_state_dir="")
    session.add_all([campaign, node])
    session.flush()
    device = Device(node_id=node.id, name="sim0", backend="sim", index=0, vendor="sim", model="Sim", simulated=True)
    session.add(device)
    session.flush()
    seconds = np.arange(MINUTES * 60)
    kept = (seconds < 190) | (seconds >= 210)
    temperature = 60.0 + 5.0 * np.sin(seconds / 50.0) + np.random.default_rng(1).normal(0.0, 0.3, seconds.size)
    reasons = np.where((seconds >= 320) & (seconds < 400) & (seconds % 7 < 3), 4.0, 0.0)
    rows: list[SampleRow] = [
        (campaign.id, node.id, device.id, TEMPERATURE, MINUTE_START_S + second, float(temperature[second]))
        for second in seconds[kept]
    ]
    rows += [(campaign.id, node.id, device.id, REASONS, MINUTE_START_S + s, float(reasons[s])) for s in seconds]
    write_samples(session=session, rows=rows)
    session.commit()
    return campaign.id, device.id


def per_minute(series: Series) -> dict[float, tuple[int, float, float, float]]:
    minute_s = np.floor(series.time_s / 60.0) * 60.0
    return {
        float(minute): (
            int(np.sum(minute_s == minute)),
            round(float(np.sum(series.values[minute_s == minute])), 9),
            float(np.min(series.values[minute_s == minute])),
            float(np.max(series.values[minute_s == minute])),
        )
        for minute in np.unique(minute_s)
    }


def test_minute_series_keeps_every_minute_with_samples_past_the_watermark_merged_in(session: Session) -> None:
    campaign_id, device_id = stored_minutes(session)
    # The watermark stops half-way through a minute of temperature: its rest and the bitmask are not rolled up yet.
    roll_up(session=session, max_rows=150)

    rebuilt = minute_series(session=session, campaign_id=campaign_id, device_id=device_id)
    raw = device_series(session=session, campaign_id=campaign_id, device_id=device_id)

    assert per_minute(rebuilt[TEMPERATURE]) == per_minute(raw[TEMPERATURE])
    # Where samples are missing, times are the stored ones: the 20 s gap is where it was.
    gap = (rebuilt[TEMPERATURE].time_s >= MINUTE_START_S + 180) & (rebuilt[TEMPERATURE].time_s < MINUTE_START_S + 240)
    assert np.array_equal(
        rebuilt[TEMPERATURE].time_s[gap],
        raw[TEMPERATURE].time_s[
            (raw[TEMPERATURE].time_s >= MINUTE_START_S + 180) & (raw[TEMPERATURE].time_s < MINUTE_START_S + 240)
        ],
    )
    # A bitmask is never averaged: steady minutes come back exactly, changing ones are read raw.
    assert np.array_equal(rebuilt[REASONS].time_s, raw[REASONS].time_s)
    assert np.array_equal(rebuilt[REASONS].values, raw[REASONS].values)


def test_a_minute_whose_raw_samples_were_retired_is_rebuilt_from_its_rollup(session: Session) -> None:
    campaign_id, device_id = stored_minutes(session)
    roll_up_all(session=session)
    raw = device_series(session=session, campaign_id=campaign_id, device_id=device_id)
    # As retention leaves it: the raw samples of the minute with the gap are gone, its rollup stays.
    session.execute(delete(Sample).where(Sample.time_s >= MINUTE_START_S + 180, Sample.time_s < MINUTE_START_S + 240))
    session.commit()

    rebuilt = minute_series(session=session, campaign_id=campaign_id, device_id=device_id)

    assert per_minute(rebuilt[TEMPERATURE]) == per_minute(raw[TEMPERATURE])
    assert per_minute(rebuilt[REASONS]) == per_minute(raw[REASONS])


def detections(fleet: list[DeviceTelemetry], plan: Plan) -> list[Detection]:
    found = [detection for device in fleet for detection in detect_device(device, plan.acceptance)]
    return found + detect_fleet(fleet, plan.acceptance)


def identity(detection: Detection) -> tuple[str | None, str, str, str]:
    return (detection.device, detection.kind, detection.subject, detection.severity)


def test_rollup_backed_detection_finds_what_the_raw_samples_show(session: Session) -> None:
    campaign = store_fleet(session=session, spec=SPEC, name="days")
    plan = parse_plan(campaign.plan)
    assert reads_rollups(plan)

    from_minutes = load_fleet(
        session=session, campaign_id=campaign.id, plan=plan, start_s=SPEC.start_s, end_s=SPEC.end_s
    )
    ids = dict(session.execute(select(Device.name, Device.id)).all())
    from_raw = [
        dataclasses.replace(
            device, series=device_series(session=session, campaign_id=campaign.id, device_id=ids[device.device])
        )
        for device in from_minutes
    ]

    for minutes, raw in zip(from_minutes, from_raw, strict=True):
        assert sorted(minutes.series) == sorted(raw.series)
        for name, series in raw.series.items():
            rebuilt = minutes.series[name]
            # Every sample is there, with the same total and extremes; only where in its minute each lay may differ.
            assert len(rebuilt) == len(series), name
            assert np.isclose(np.sum(rebuilt.values), np.sum(series.values), rtol=1e-9), name
            assert (np.min(rebuilt.values), np.max(rebuilt.values)) == (np.min(series.values), np.max(series.values))
    found_raw = sorted(detections(from_raw, plan), key=identity)
    found_minutes = sorted(detections(from_minutes, plan), key=identity)
    assert {detection.kind for detection in found_raw} >= {
        "throttling",
        "thermal_margin",
        "throughput_drift",
        "memory_health",
        "memory_leak",
    }
    assert [identity(detection) for detection in found_minutes] == [identity(detection) for detection in found_raw]
    block_s = shortest_block_s(plan)
    for minutes_detection, raw_detection in zip(found_minutes, found_raw, strict=True):
        assert abs(minutes_detection.onset_s - raw_detection.onset_s) <= block_s, identity(raw_detection)
    # The controller's pass reads and judges one device at a time, keeping only throughput for the peers.
    held = run_detection(session=session, campaign_id=campaign.id, plan=plan, start_s=SPEC.start_s, end_s=SPEC.end_s)
    assert held == len(found_minutes)


@pytest.mark.parametrize(
    ("duration", "sample_interval", "expected"),
    [
        (timedelta(minutes=4), timedelta(seconds=1), False),  # the demo: blocks of a second
        (timedelta(hours=1), timedelta(seconds=1), False),  # blocks of 12.5 s
        (timedelta(days=1), timedelta(seconds=1), True),  # blocks of nearly 5 min
        (timedelta(days=14), timedelta(minutes=1), False),  # a sample a minute: nothing to roll up
    ],
)
def test_only_campaigns_judged_on_blocks_of_minutes_read_rollups(
    plan_data: dict[str, object], duration: timedelta, sample_interval: timedelta, expected: bool
) -> None:
    plan = parse_plan(
        {**plan_data, "duration": duration.total_seconds(), "sample_interval": sample_interval.total_seconds()}
    )

    assert reads_rollups(plan) is expected

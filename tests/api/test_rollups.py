"""Rollups: each bucket holds the aggregate of its samples, however and whenever they arrived, and the series API
answers the same from rollups as from raw samples."""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign
from soak.db import session_factory
from soak.nodes.models import Device, Node
from soak.telemetry.maintenance import MaintenanceLoop
from soak.telemetry.models import MetricName, Sample
from soak.telemetry.rollup_models import HourRollup, MinuteRollup, Rollup, RollupState
from soak.telemetry.rollups import ROLLED_UP_TABLE, roll_up
from soak.telemetry.summaries import campaign_summaries

# On a whole hour, so that minute and hour buckets tile steps counted from it.
START_S = 1_789_999_200.0
HOURS = 3
DEVICES = ("sim0", "sim1")
METRICS = ("device.temperature_c", "throughput.gemm")
SERIES = "/api/v1/campaigns/{}/series"

Bucket = tuple[str, str, int]
"""device, metric, bucket start (epoch s)."""


@dataclass
class Sent:
    """What the test posted, device samples by series, to compute what every bucket must hold."""

    campaign_id: int
    values: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))

    def expected(self, bucket_length_s: int) -> dict[Bucket, tuple[int, float, float, float, float, float]]:
        """Per bucket: count, min, max, sum, last time, last value."""
        buckets: dict[Bucket, list[tuple[float, float]]] = defaultdict(list)
        for (device, metric), samples in self.values.items():
            for time_s, value in samples:
                buckets[device, metric, int(time_s // bucket_length_s) * bucket_length_s].append((time_s, value))
        expected = {}
        for key, samples in buckets.items():
            values = [value for _, value in samples]
            last_time_s, last_value = max(samples)
            expected[key] = (len(values), min(values), max(values), math.fsum(values), last_time_s, last_value)
        return expected


@pytest.fixture
def post(client: TestClient, auth: dict[str, str]) -> Callable[[Sent, list[dict[str, Any]]], None]:
    """POST samples as node n1 does, remembering the device samples in `sent`."""

    def send(sent: Sent, samples: list[dict[str, Any]]) -> None:
        for first in range(0, len(samples), 2000):
            chunk = samples[first : first + 2000]
            batch = {"batch_id": uuid.uuid4().hex, "node": "n1", "campaign_id": sent.campaign_id, "samples": chunk}
            response = client.post("/api/v1/telemetry", json=batch, headers=auth)
            assert response.status_code == 200 and response.json()["samples_stored"] == len(chunk), response.text
        for sample in samples:
            if "device" in sample:
                sent.values[sample["device"], sample["metric"]].append((sample["time_s"], sample["value"]))

    return send


@pytest.fixture
def sent(
    client: TestClient,
    auth: dict[str, str],
    register: Callable[..., Any],
    plan_data: dict[str, Any],
    post: Callable[[Sent, list[dict[str, Any]]], None],
) -> Sent:
    """Three hours of two metrics of two devices, about every 5 s at uneven times, and the node's own load."""
    register("n1", list(DEVICES))
    sent = Sent(campaign_id=client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"])
    rng = np.random.default_rng(11)
    times_s = START_S + np.arange(0, HOURS * 3600, 5) + rng.uniform(0, 4.9, HOURS * 720)
    samples = [
        {"time_s": float(t), "device": device, "metric": metric, "value": float(rng.normal(60, 15))}
        for device in DEVICES
        for metric in METRICS
        for t in times_s
    ]
    node_samples = [{"time_s": float(t), "metric": "host.load_1m", "value": 1.0} for t in times_s[::10]]
    # Shuffled, as batches from several workers interleave: rows are not stored in time order.
    order = rng.permutation(len(samples))
    post(sent, [samples[i] for i in order] + node_samples)
    return sent


def stored(session: Session, rollup: type[Rollup]) -> dict[Bucket, tuple[int, float, float, float, float, float]]:
    """Every row of a rollup table, keyed like Sent.expected."""
    devices = dict(session.execute(select(Device.id, Device.name)).all())
    rows = session.execute(
        select(
            rollup.device_id,
            MetricName.name,
            rollup.bucket_s,
            rollup.count,
            rollup.min_value,
            rollup.max_value,
            rollup.sum_value,
            rollup.last_time_s,
            rollup.last_value,
        ).join(MetricName, MetricName.id == rollup.metric_id)
    )
    return {(devices[device_id], metric, bucket_s): tuple(rest) for device_id, metric, bucket_s, *rest in rows}


def assert_rollups_hold(session: Session, sent: Sent) -> None:
    """Each rollup row is the aggregate of its bucket's samples, and every bucket with samples has a row."""
    for rollup in (MinuteRollup, HourRollup):
        expected = sent.expected(rollup.bucket_length_s)
        actual = stored(session, rollup)
        assert actual.keys() == expected.keys(), rollup.__tablename__
        for key, (count, low, high, total, last_time_s, last_value) in expected.items():
            assert actual[key][:3] == (count, low, high), (rollup.__tablename__, key)
            assert actual[key][3] == pytest.approx(total, rel=1e-12), (rollup.__tablename__, key)
            assert actual[key][4:] == (last_time_s, last_value), (rollup.__tablename__, key)


def roll_up_all(session: Session, max_rows: int = 200_000) -> int:
    """roll_up until it has nothing left; the samples read in all."""
    read = 0
    while batch := roll_up(session=session, max_rows=max_rows):
        read += batch
    return read


def test_each_bucket_holds_the_count_extremes_sum_and_last_of_its_samples(session: Session, sent: Sent) -> None:
    read = roll_up_all(session)

    # Node samples are read past too; they stay raw and no bucket holds them.
    assert read == len(session.scalars(select(Sample.id)).all())
    assert_rollups_hold(session, sent)
    assert {metric for _, metric, _ in stored(session, MinuteRollup)} == set(METRICS)


def test_rolling_up_again_changes_nothing(session: Session, sent: Sent) -> None:
    roll_up_all(session)
    before = {rollup: stored(session, rollup) for rollup in (MinuteRollup, HourRollup)}

    assert roll_up(session=session) == 0
    assert {rollup: stored(session, rollup) for rollup in (MinuteRollup, HourRollup)} == before


def test_small_batches_add_up_to_the_same_buckets(session: Session, sent: Sent) -> None:
    read = roll_up_all(session, max_rows=997)

    assert read == len(session.scalars(select(Sample.id)).all())
    assert_rollups_hold(session, sent)


def test_late_samples_are_merged_into_the_buckets_already_rolled_up(
    session: Session, sent: Sent, post: Callable[[Sent, list[dict[str, Any]]], None]
) -> None:
    roll_up_all(session)
    # An agent's spool replayed after a partition: old times, a new extreme, a new last sample of a minute.
    late = [
        {"time_s": START_S + 61.0, "device": "sim0", "metric": METRICS[0], "value": -40.0},
        {"time_s": START_S + 119.99, "device": "sim0", "metric": METRICS[0], "value": 500.0},
        {"time_s": START_S + 3600 + 30.5, "device": "sim1", "metric": METRICS[1], "value": 61.0},
        {"time_s": START_S + HOURS * 3600 + 5.0, "device": "sim1", "metric": METRICS[1], "value": 62.0},
    ]
    post(sent, late)

    assert roll_up_all(session) == len(late)
    assert_rollups_hold(session, sent)


def test_samples_stored_after_every_raw_sample_was_deleted_are_rolled_up(
    session: Session, sent: Sent, post: Callable[[Sent, list[dict[str, Any]]], None]
) -> None:
    roll_up_all(session)
    # As retention would after a quiet fortnight: the rollups keep what the raw samples held.
    session.execute(delete(Sample))
    session.commit()

    post(sent, [{"time_s": START_S + HOURS * 3600 + 7.0, "device": "sim0", "metric": METRICS[0], "value": 1.0}])

    assert roll_up_all(session) == 1
    assert_rollups_hold(session, sent)


def test_a_sample_committed_after_a_higher_id_is_still_rolled_up(
    engine: Engine, session: Session, sent: Sent, post: Callable[[Sent, list[dict[str, Any]]], None]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no id can commit after a higher one")
    roll_up_all(session)
    node_id = session.scalars(select(Node.id).where(Node.name == "n1")).one()
    device_id = session.scalars(select(Device.id).where(Device.name == "sim0")).one()
    slow = {"time_s": START_S + 10.0, "device": "sim0", "metric": METRICS[0], "value": 99.0}
    with engine.connect() as in_flight:
        # Takes its id now, commits after a later batch has committed higher ids.
        in_flight.execute(
            insert(Sample).values(
                campaign_id=sent.campaign_id,
                node_id=node_id,
                device_id=device_id,
                metric_id=session.scalars(select(MetricName.id).where(MetricName.name == slow["metric"])).one(),
                time_s=slow["time_s"],
                value=slow["value"],
            )
        )
        post(sent, [{"time_s": START_S + 20.0, "device": "sim0", "metric": METRICS[0], "value": 98.0}])

        assert roll_up(session=session) == 0
        in_flight.commit()
    sent.values["sim0", METRICS[0]].append((slow["time_s"], slow["value"]))

    assert roll_up_all(session) == 2
    assert_rollups_hold(session, sent)


def series(client: TestClient, campaign_id: int, **params: Any) -> Any:
    query = {"metric": METRICS[0], "device": "sim0", "from": START_S, "to": START_S + HOURS * 3600, **params}
    response = client.get(SERIES.format(campaign_id), params=query)
    assert response.status_code == 200, response.text
    return response.json()


def assert_series_matches(answer: Any, sent: Sent, from_s: float, to_s: float, step_s: float) -> None:
    """The points are, per step with samples, its start and the mean, extremes and count of sim0's samples."""
    steps: dict[int, list[float]] = defaultdict(list)
    for time_s, value in sent.values["sim0", METRICS[0]]:
        if from_s <= time_s < to_s:
            steps[int((time_s - from_s) // step_s)].append(value)
    expected = [(from_s + index * step_s, min(v), max(v), len(v)) for index, v in sorted(steps.items())]
    points = answer["points"]
    assert [(p["time_s"], p["min"], p["max"], p["count"]) for p in points] == expected
    # Sums add up in another order in a rollup: the mean agrees within rounding.
    means = [math.fsum(v) / len(v) for _, v in sorted(steps.items())]
    assert np.allclose([p["mean"] for p in points], means, rtol=1e-12)


@pytest.mark.parametrize(
    ("step_s", "to_s", "source"),
    [
        (60, START_S + HOURS * 3600, "1m"),
        (300, START_S + HOURS * 3600 - 90.5, "1m"),
        (5400, START_S + HOURS * 3600, "1m"),
        (3600, START_S + HOURS * 3600, "1h"),
        (7200, START_S + HOURS * 3600 - 1000, "1h"),
        (90, START_S + HOURS * 3600, "raw"),
    ],
)
def test_the_series_is_the_same_whichever_source_answers(
    client: TestClient, session: Session, sent: Sent, step_s: float, to_s: float, source: str
) -> None:
    before = series(client, sent.campaign_id, step=step_s, to=to_s)
    roll_up(session=session, max_rows=5000)
    partly = series(client, sent.campaign_id, step=step_s, to=to_s)
    roll_up_all(session)
    after = series(client, sent.campaign_id, step=step_s, to=to_s)

    for answer in (before, partly, after):
        assert (answer["resolution"], answer["step_s"], answer["source"]) == ("step", step_s, source)
        assert_series_matches(answer, sent, START_S, to_s, step_s)


def test_a_range_not_on_a_bucket_boundary_is_answered_from_raw_samples(
    client: TestClient, session: Session, sent: Sent
) -> None:
    roll_up_all(session)

    answer = series(client, sent.campaign_id, step=60, **{"from": START_S + 30})

    assert answer["source"] == "raw"
    assert_series_matches(answer, sent, START_S + 30, START_S + HOURS * 3600, 60)


def test_a_default_range_starts_on_the_hour_so_that_rollups_can_answer_it(
    client: TestClient, session: Session, sent: Sent
) -> None:
    campaign = session.get_one(Campaign, sent.campaign_id)
    campaign.started_at = datetime.fromtimestamp(START_S + 1000, UTC)
    campaign.ended_at = datetime.fromtimestamp(START_S + 10 * 3600, UTC)
    session.commit()
    roll_up_all(session)

    query = {"metric": METRICS[0], "device": "sim0"}
    answer = client.get(SERIES.format(sent.campaign_id), params=query).json()

    # Ten hours cut into about a thousand steps: a minute each.
    assert (answer["from_s"], answer["step_s"], answer["source"]) == (START_S, 60, "1m")
    assert_series_matches(answer, sent, START_S, START_S + 10 * 3600, 60)


def test_the_controller_rolls_up_in_the_background(engine: Engine, session: Session, sent: Sent) -> None:
    last_sample_id = session.scalars(select(func.max(Sample.id))).one()
    watermark = select(RollupState.last_sample_id).where(RollupState.input_table == ROLLED_UP_TABLE)
    loop = MaintenanceLoop(sessions=session_factory(engine), interval_s=0.05, raw_retention_days=14, max_rows=1000)
    loop.start()
    try:
        deadline_s = time.monotonic() + 60
        while session.scalar(watermark) != last_sample_id and time.monotonic() < deadline_s:
            session.rollback()
            time.sleep(0.05)
    finally:
        loop.stop()

    assert_rollups_hold(session, sent)


def test_campaign_summaries_are_the_aggregates_of_every_sample(engine: Engine, sent: Sent) -> None:
    with session_factory(engine)() as session:
        while roll_up(session=session, max_rows=5000):
            pass
        summaries = campaign_summaries(session=session, campaign_id=sent.campaign_id)

    assert [(summary.device, summary.metric) for summary in summaries] == sorted(sent.values)
    for summary in summaries:
        samples = sent.values[summary.device, summary.metric]
        values = [value for _, value in samples]
        last_time_s, last_value = max(samples)
        assert summary.count == len(values)
        assert summary.mean == pytest.approx(math.fsum(values) / len(values), rel=1e-12)
        assert (summary.min, summary.max) == (min(values), max(values))
        assert (summary.last_time_s, summary.last_value) == (last_time_s, last_value)


def test_progress_counts_every_sample_before_and_after_rollups_and_past_retention(
    client: TestClient, auth: dict[str, str], engine: Engine, sent: Sent
) -> None:
    def stored_per_progress() -> int:
        response = client.get(f"/api/v1/campaigns/{sent.campaign_id}", headers=auth)
        return int(response.json()["samples_stored"])

    posted = sum(len(samples) for samples in sent.values.values()) + HOURS * 72  # and the node's own samples
    assert stored_per_progress() == posted
    with session_factory(engine)() as session:
        roll_up(session=session, max_rows=5000)  # part of them: the tally and the rest past the watermark add up
    assert stored_per_progress() == posted
    with session_factory(engine)() as session:
        while roll_up(session=session, max_rows=5000):
            pass
        # Raw samples the rollups hold may be removed by retention; they were stored all the same.
        watermark_id = session.scalars(select(RollupState.last_sample_id)).one()
        session.execute(delete(Sample).where(Sample.id <= watermark_id // 2))
        session.commit()
    assert stored_per_progress() == posted

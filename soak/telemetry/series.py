"""One metric of one device over a time range, raw or averaged into steps: what dashboards and reports plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import CompoundSelect, Float, Row, Select, cast, func, literal, select, union_all
from sqlalchemy.orm import Session

from soak.analysis.series import Series
from soak.db import floor_integer
from soak.nodes.models import Device
from soak.telemetry.metric_names import metric_id
from soak.telemetry.models import MetricName, Sample
from soak.telemetry.rollup_models import HourRollup, MinuteRollup, Rollup
from soak.telemetry.rollups import with_rollups_settled

# A plot is a few thousand pixels wide: more points than this are asked for with a larger step.
MAX_POINTS = 10_000
# Without a step, a range is cut into about this many steps of a round length.
DEFAULT_POINTS = 1_000
ROUND_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
# Coarsest first: the first whose buckets tile the steps answers.
ROLLUPS_BY_SOURCE: dict[Literal["1m", "1h"], type[Rollup]] = {"1h": HourRollup, "1m": MinuteRollup}
# Ranges of raw samples read in one statement: five bound parameters each, well under SQLite's limit.
SPANS_PER_STATEMENT = 200


class SeriesPoint(BaseModel):
    """One sample (raw) or the samples of one step: their mean, extremes and count; time is the step's start."""

    time_s: float
    mean: float
    min: float
    max: float
    count: int


class SeriesOut(BaseModel):
    """A metric of a device over [from_s, to_s)."""

    campaign_id: int
    device: str
    metric: str
    from_s: float
    to_s: float
    resolution: Literal["raw", "step"]
    step_s: float | None
    # What answered: raw samples, or minute or hour rollups (with the samples not yet rolled up).
    source: Literal["raw", "1m", "1h"]
    points: list[SeriesPoint]


class UnknownDevice(LookupError):
    """The series names a device the fleet does not have."""


class BadRange(ValueError):
    """The range or step asked for cannot be answered; the message names the parameter and the fix."""


def round_step_s(range_s: float) -> float:
    """The smallest round step that cuts range_s into at most DEFAULT_POINTS steps."""
    wanted_s = range_s / DEFAULT_POINTS
    return float(next((step for step in ROUND_STEPS_S if step >= wanted_s), math.ceil(wanted_s / 86400) * 86400))


def read_series(
    *,
    session: Session,
    campaign_id: int,
    device: str,
    metric: str,
    from_s: float,
    to_s: float,
    step_s: float | None,
    sample_interval_s: float,
) -> SeriesOut:
    """Raw samples when the step is no longer than the sampling interval; else one averaged point per step."""
    if not to_s > from_s:
        raise BadRange(f"to: must be after from ({to_s} is not after {from_s})")
    if step_s is not None and step_s <= 0:
        raise BadRange(f"step: must be a positive number of seconds, got {step_s}")
    device_id = session.scalar(select(Device.id).where(Device.name == device))
    if device_id is None:
        raise UnknownDevice(f"device: {device!r} is not a device of this fleet; GET /api/v1/devices lists them")
    step_s = round_step_s(to_s - from_s) if step_s is None else step_s
    points = (to_s - from_s) / step_s
    if points > MAX_POINTS:
        raise BadRange(
            f"step: {step_s:g} s cuts the range into {points:.0f} points, more than {MAX_POINTS}; "
            f"use a step of at least {math.ceil((to_s - from_s) / MAX_POINTS)} s"
        )
    stored_metric_id = metric_id(session=session, name=metric)
    if stored_metric_id is None:
        no_samples = None if step_s <= sample_interval_s else step_s
        return _series_out(campaign_id, device, metric, from_s, to_s, step_s=no_samples, source="raw", points=[])
    where = (
        Sample.campaign_id == campaign_id,
        Sample.device_id == device_id,
        Sample.metric_id == stored_metric_id,
        Sample.time_s >= from_s,
        Sample.time_s < to_s,
    )
    if step_s <= sample_interval_s:
        rows = session.execute(select(Sample.time_s, Sample.value).where(*where).order_by(Sample.time_s)).all()
        raw = [SeriesPoint(time_s=t, mean=v, min=v, max=v, count=1) for t, v in rows]
        return _series_out(campaign_id, device, metric, from_s, to_s, step_s=None, source="raw", points=raw)
    source = rollup_source(from_s=from_s, step_s=step_s)
    if source == "raw":
        stepped = _stepped_points(session=session, parts=_sample_parts().where(*where), from_s=from_s, step_s=step_s)
    else:
        rollup = ROLLUPS_BY_SOURCE[source]
        # Whole buckets up to the last one that ends by to_s; samples after it are read raw.
        whole_end_s = from_s + (to_s - from_s) // rollup.bucket_length_s * rollup.bucket_length_s
        rolled_up = select(
            cast(rollup.bucket_s, Float), rollup.count, rollup.min_value, rollup.max_value, rollup.sum_value
        ).where(
            rollup.campaign_id == campaign_id,
            rollup.device_id == device_id,
            rollup.metric_id == stored_metric_id,
            rollup.bucket_s >= from_s,
            rollup.bucket_s < whole_end_s,
        )

        def stepped_past(watermark_id: int) -> list[SeriesPoint]:
            # A value, not a subquery, so that the planner reads the few samples past it by id.
            parts = union_all(
                rolled_up,
                _sample_parts().where(*where, Sample.id > watermark_id),
                _sample_parts().where(*where, Sample.id <= watermark_id, Sample.time_s >= whole_end_s),
            )
            return _stepped_points(session=session, parts=parts, from_s=from_s, step_s=step_s)

        stepped = with_rollups_settled(session=session, read=stepped_past)
    return _series_out(campaign_id, device, metric, from_s, to_s, step_s=step_s, source=source, points=stepped)


def _series_out(
    campaign_id: int,
    device: str,
    metric: str,
    from_s: float,
    to_s: float,
    *,
    step_s: float | None,
    source: Literal["raw", "1m", "1h"],
    points: list[SeriesPoint],
) -> SeriesOut:
    """The answer: raw samples when there is no step, else one point per step."""
    return SeriesOut(
        campaign_id=campaign_id,
        device=device,
        metric=metric,
        from_s=from_s,
        to_s=to_s,
        resolution="raw" if step_s is None else "step",
        step_s=step_s,
        source=source,
        points=points,
    )


def _sample_parts() -> Select[float, int, float, float, float]:
    """Samples as one-sample buckets: time, count, min, max, sum."""
    return select(
        Sample.time_s, literal(1).label("count"), Sample.value.label("low"), Sample.value.label("high"), Sample.value
    )


def _stepped_points(
    *,
    session: Session,
    parts: Select[float, int, float, float, float] | CompoundSelect[float, int, float, float, float],
    from_s: float,
    step_s: float,
) -> list[SeriesPoint]:
    """Buckets (time, count, min, max, sum) combined per step; a bucket lies wholly in the step of its start."""
    time_s, count, low, high, total = parts.subquery().c
    step_index = floor_integer((time_s - from_s) / step_s, dialect_name=session.get_bind().dialect.name)
    statement = (
        select(step_index.label("step"), func.sum(total), func.min(low), func.max(high), func.sum(count))
        .group_by("step")
        .order_by("step")
    )
    return [
        SeriesPoint(time_s=from_s + index * step_s, mean=summed / counted, min=lowest, max=highest, count=counted)
        for index, summed, lowest, highest, counted in session.execute(statement).all()
    ]


def rollup_source(*, from_s: float, step_s: float) -> Literal["raw", "1m", "1h"]:
    """The coarsest rollup whose buckets tile every step of the range exactly, or raw when none does."""
    for source, rollup in ROLLUPS_BY_SOURCE.items():
        if step_s % rollup.bucket_length_s == 0 and from_s % rollup.bucket_length_s == 0:
            return source
    return "raw"


@dataclass(frozen=True)
class MinuteBuckets:
    """One metric of one device per minute, oldest first: count, extremes, sum and latest sample time of each."""

    metric_id: int
    bucket_s: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    min_value: npt.NDArray[np.float64]
    max_value: npt.NDArray[np.float64]
    sum_value: npt.NDArray[np.float64]
    last_time_s: npt.NDArray[np.float64]


def device_minute_buckets(*, session: Session, campaign_id: int, device_id: int) -> dict[str, MinuteBuckets]:
    """Every metric of one device over a campaign per minute: the minute rollups, with the samples not yet rolled
    up merged into their minutes, so that every stored sample is in exactly one bucket."""
    rollup = MinuteRollup
    rolled_up = select(
        rollup.metric_id,
        rollup.bucket_s,
        rollup.count,
        rollup.min_value,
        rollup.max_value,
        rollup.sum_value,
        rollup.last_time_s,
    ).where(rollup.campaign_id == campaign_id, rollup.device_id == device_id)
    bucket_s = floor_integer(
        Sample.time_s / rollup.bucket_length_s, dialect_name=session.get_bind().dialect.name
    ) * literal(rollup.bucket_length_s)
    value = Sample.value

    # metric id, bucket start, count, min, max, sum, latest time; the union's columns are untyped.
    def merged_past(watermark_id: int) -> Sequence[Row[Any, Any, Any, Any, Any, Any, Any]]:
        recent = select(Sample.metric_id, bucket_s, literal(1), value, value, value, Sample.time_s).where(
            Sample.campaign_id == campaign_id, Sample.device_id == device_id, Sample.id > watermark_id
        )
        metric, bucket, count, low, high, total, last = union_all(rolled_up, recent).subquery().c
        statement = (
            select(metric, bucket, func.sum(count), func.min(low), func.max(high), func.sum(total), func.max(last))
            .group_by(metric, bucket)
            .order_by(metric, bucket)
        )
        return session.execute(statement).all()

    rows = with_rollups_settled(session=session, read=merged_past)
    if not rows:
        return {}
    columns = _columns(rows)
    metric_ids = columns[0].astype(np.int64)
    names = dict(
        session.execute(select(MetricName.id, MetricName.name).where(MetricName.id.in_(set(metric_ids.tolist())))).all()
    )
    cuts = np.flatnonzero(np.diff(metric_ids)) + 1
    buckets: dict[str, MinuteBuckets] = {}
    for part in np.split(np.arange(metric_ids.size), cuts):
        stored_id = int(metric_ids[part[0]])
        buckets[names[stored_id]] = MinuteBuckets(
            metric_id=stored_id,
            bucket_s=columns[1, part],
            count=columns[2, part].astype(np.int64),
            min_value=columns[3, part],
            max_value=columns[4, part],
            sum_value=columns[5, part],
            last_time_s=columns[6, part],
        )
    return buckets


def device_samples_within(
    *, session: Session, campaign_id: int, device_id: int, spans: Sequence[tuple[int, float, float]]
) -> dict[int, Series]:
    """The raw samples of one device in each (metric id, from_s, to_s) span, per metric id, ordered by time."""
    rows: list[Row[int, float, float]] = []
    for first in range(0, len(spans), SPANS_PER_STATEMENT):
        # One indexed range scan per span; an OR of ranges would make SQLite scan all of the device's samples.
        statement = union_all(
            *(
                select(Sample.metric_id, Sample.time_s, Sample.value).where(
                    Sample.campaign_id == campaign_id,
                    Sample.device_id == device_id,
                    Sample.metric_id == stored_id,
                    Sample.time_s >= from_s,
                    Sample.time_s < to_s,
                )
                for stored_id, from_s, to_s in spans[first : first + SPANS_PER_STATEMENT]
            )
        )
        rows.extend(session.execute(statement).all())
    if not rows:
        return {}
    columns = _columns(rows)
    order = np.lexsort((columns[1], columns[0]))
    metric_ids, time_s, values = columns[0, order].astype(np.int64), columns[1, order], columns[2, order]
    cuts = np.flatnonzero(np.diff(metric_ids)) + 1
    return {
        int(metric_ids[part[0]]): Series(time_s[part], values[part])
        for part in np.split(np.arange(metric_ids.size), cuts)
    }


def _columns(rows: Sequence[Sequence[Any]]) -> npt.NDArray[np.float64]:
    """Rows as one float array per column; unpacked as plain tuples, since numpy probes a Row for array protocols
    attribute by attribute, each probe a caught exception, which costs more than the query."""
    return np.array(list(zip(*rows, strict=True)), dtype=np.float64)

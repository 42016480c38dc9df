"""One metric of one device over a time range, raw or averaged into steps: what dashboards and reports plot."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import CompoundSelect, Float, Select, cast, func, literal, select, union_all
from sqlalchemy.orm import Session

from soak.db import floor_integer
from soak.nodes.models import Device
from soak.telemetry.metric_names import metric_id
from soak.telemetry.models import Sample
from soak.telemetry.rollup_models import HourRollup, MinuteRollup, Rollup, RollupState
from soak.telemetry.rollups import ROLLED_UP_TABLE

# A plot is a few thousand pixels wide: more points than this are asked for with a larger step.
MAX_POINTS = 10_000
# Without a step, a range is cut into about this many steps of a round length.
DEFAULT_POINTS = 1_000
ROUND_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
# Coarsest first: the first whose buckets tile the steps answers.
ROLLUPS_BY_SOURCE: dict[Literal["1m", "1h"], type[Rollup]] = {"1h": HourRollup, "1m": MinuteRollup}


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
        watermark = select(RollupState.last_sample_id).where(RollupState.input_table == ROLLED_UP_TABLE)
        while True:
            watermark_id = session.scalar(watermark) or 0
            # A value, not a subquery, so that the planner reads the few samples past it by id.
            parts = union_all(
                rolled_up,
                _sample_parts().where(*where, Sample.id > watermark_id),
                _sample_parts().where(*where, Sample.id <= watermark_id, Sample.time_s >= whole_end_s),
            )
            stepped = _stepped_points(session=session, parts=parts, from_s=from_s, step_s=step_s)
            # The watermark only grows: unchanged after the read, no roll-up committed during it to count twice.
            if (session.scalar(watermark) or 0) == watermark_id:
                break
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

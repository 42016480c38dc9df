"""One metric of one device over a time range, raw or averaged into steps: what dashboards and reports plot."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Float, Integer, cast, func, select
from sqlalchemy.orm import Session

from soak.nodes.models import Device
from soak.telemetry.models import Sample

# A plot is a few thousand pixels wide: more points than this are asked for with a larger step.
MAX_POINTS = 10_000
# Without a step, a range is cut into about this many steps of a round length.
DEFAULT_POINTS = 1_000
ROUND_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


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
    where = (
        Sample.campaign_id == campaign_id,
        Sample.device_id == device_id,
        Sample.metric == metric,
        Sample.time_s >= from_s,
        Sample.time_s < to_s,
    )
    if step_s <= sample_interval_s:
        rows = session.execute(select(Sample.time_s, Sample.value).where(*where).order_by(Sample.time_s)).all()
        raw = [SeriesPoint(time_s=t, mean=v, min=v, max=v, count=1) for t, v in rows]
        return SeriesOut(
            campaign_id=campaign_id,
            device=device,
            metric=metric,
            from_s=from_s,
            to_s=to_s,
            resolution="raw",
            step_s=None,
            points=raw,
        )
    offset = (Sample.time_s - from_s) / step_s
    # Postgres casts to integer by rounding, SQLite by truncating; floor() is what both must mean here.
    step_index = func.floor(offset) if session.get_bind().dialect.name == "postgresql" else cast(offset, Integer)
    bucket = cast(step_index, Integer).label("bucket")
    statement = (
        select(
            bucket,
            cast(func.avg(Sample.value), Float),
            func.min(Sample.value),
            func.max(Sample.value),
            func.count(),
        )
        .where(*where)
        .group_by(bucket)
        .order_by(bucket)
    )
    stepped = [
        SeriesPoint(time_s=from_s + index * step_s, mean=mean, min=low, max=high, count=count)
        for index, mean, low, high, count in session.execute(statement).all()
    ]
    return SeriesOut(
        campaign_id=campaign_id,
        device=device,
        metric=metric,
        from_s=from_s,
        to_s=to_s,
        resolution="step",
        step_s=step_s,
        points=stepped,
    )

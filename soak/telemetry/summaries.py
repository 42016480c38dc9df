"""Each metric of each device over a whole campaign, from the hour rollups: the figures a report's tables hold."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soak.nodes.models import Device
from soak.telemetry.models import MetricName
from soak.telemetry.rollup_models import HourRollup


@dataclass(frozen=True)
class MetricSummary:
    """Count, mean, extremes and latest value of one metric of one device."""

    device: str
    metric: str
    count: int
    mean: float
    min: float
    max: float
    last_time_s: float
    last_value: float


def campaign_summaries(*, session: Session, campaign_id: int) -> list[MetricSummary]:
    """Every device metric of the campaign as far as the rollups have read (run roll_up first for the latest)."""
    totals = (
        select(
            HourRollup.device_id,
            HourRollup.metric_id,
            func.sum(HourRollup.count).label("count"),
            func.sum(HourRollup.sum_value).label("sum"),
            func.min(HourRollup.min_value).label("low"),
            func.max(HourRollup.max_value).label("high"),
            func.max(HourRollup.last_time_s).label("last_time_s"),
        )
        .where(HourRollup.campaign_id == campaign_id)
        .group_by(HourRollup.device_id, HourRollup.metric_id)
        .subquery()
    )
    # The latest value is the one of the hour whose last sample is the latest.
    rows = session.execute(
        select(
            Device.name,
            MetricName.name,
            totals.c.count,
            totals.c.sum,
            totals.c.low,
            totals.c.high,
            totals.c.last_time_s,
            HourRollup.last_value,
        )
        .join(Device, Device.id == totals.c.device_id)
        .join(MetricName, MetricName.id == totals.c.metric_id)
        .join(
            HourRollup,
            (HourRollup.campaign_id == campaign_id)
            & (HourRollup.device_id == totals.c.device_id)
            & (HourRollup.metric_id == totals.c.metric_id)
            & (HourRollup.last_time_s == totals.c.last_time_s),
        )
        .order_by(Device.name, MetricName.name)
    ).all()
    return [
        MetricSummary(
            device=device,
            metric=metric,
            count=int(count),
            mean=float(total) / int(count),
            min=float(low),
            max=float(high),
            last_time_s=float(last_time_s),
            last_value=float(last_value),
        )
        for device, metric, count, total, low, high, last_time_s, last_value in rows
    ]

"""Telemetry ingest (idempotent by batch id, item by item) and the queries detectors use."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from soak.analysis.series import Series
from soak.campaigns.models import Campaign
from soak.config import Settings
from soak.nodes.models import Device, Node
from soak.plan import field_path
from soak.telemetry.limits import IngestGuard, negative_problem
from soak.telemetry.models import Event, IngestedBatch, MetricName, Sample
from soak.telemetry.schemas import EventIn, IngestResult, Rejected, SampleIn, TelemetryBatch
from soak.telemetry.writer import SampleRow, write_samples

ItemT = TypeVar("ItemT", bound=BaseModel)


class UnknownNode(LookupError):
    """A batch from a node that never registered."""


class UnknownCampaign(LookupError):
    """A batch for a campaign this controller does not have."""


class BatchRefused(ValueError):
    """A batch that cannot be taken at all (too many items, another node's batch id); `problems` name the fields."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_SAMPLE_LIST = TypeAdapter(list[SampleIn])
_EVENT_LIST = TypeAdapter(list[EventIn])


def _validate_items(
    items: Sequence[object],
    adapter: TypeAdapter[list[ItemT]],
    model: type[ItemT],
    field: str,
    rejected: list[Rejected],
) -> list[tuple[int, ItemT]]:
    """The valid items with their positions in the batch, so later rejections name the right index."""
    try:
        # One call for the whole list is three times faster than one per item, and almost every batch is clean.
        return list(enumerate(adapter.validate_python(items)))
    except ValidationError:
        pass
    valid: list[tuple[int, ItemT]] = []
    for position, item in enumerate(items):
        try:
            valid.append((position, model.model_validate(item)))
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                where = field_path((field, position, *problem["loc"]))
                message = str(problem["msg"]).removeprefix("Value error, ")
                rejected.append(Rejected(index=position, field=where, problem=message))
    return valid


def ingest(
    *, session: Session, batch: TelemetryBatch, guard: IngestGuard | None = None, now_s: float | None = None
) -> IngestResult:
    """Store what is valid in a batch once; a batch id seen before stores nothing again.

    guard: the controller's limits and the metric names its nodes sent (default: SOAK_MAX_* limits, no history).
    """
    guard = guard if guard is not None else IngestGuard.from_settings(Settings())
    too_large = guard.count_problems(samples=len(batch.samples), events=len(batch.events))
    if too_large:
        raise BatchRefused(too_large)
    node = session.scalar(select(Node).where(Node.name == batch.node))
    if node is None:
        raise UnknownNode(f"node: {batch.node!r} is not registered; the agent must PUT /api/v1/nodes/{{name}} first")
    seen = session.get(IngestedBatch, batch.batch_id)
    if seen is not None and seen.node_id != node.id:
        # Otherwise a node could claim another node's batch ids ahead of it and have its batches dropped unread.
        raise BatchRefused([f"batch_id: {batch.batch_id!r} is another node's batch; every node uses ids of its own"])
    if seen is not None:
        return IngestResult(batch_id=batch.batch_id, duplicate=True, samples_stored=0, events_stored=0, rejected=[])
    # Checked here: the foreign key would fail the insert, and that IntegrityError reads as a duplicate.
    if batch.campaign_id is not None and session.get(Campaign, batch.campaign_id) is None:
        raise UnknownCampaign(
            f"campaign_id: campaign {batch.campaign_id} does not exist on this controller; nothing was stored"
        )

    rejected: list[Rejected] = []
    samples = _validate_items(batch.samples, _SAMPLE_LIST, SampleIn, "samples", rejected)
    events = _validate_items(batch.events, _EVENT_LIST, EventIn, "events", rejected)
    devices = list(session.scalars(select(Device).where(Device.node_id == node.id)))
    node_campaign = next((d.campaign_id for d in devices if d.campaign_id is not None), None)
    # (device_id, campaign_id) by device name; None names the node itself.
    targets: dict[str | None, tuple[int | None, int | None]] = {
        device.name: (device.id, batch.campaign_id or device.campaign_id) for device in devices
    }
    targets[None] = (None, batch.campaign_id or node_campaign)

    now_s = time.time() if now_s is None else now_s
    over_cap = guard.metric_problems(node.name, {sample.metric for _, sample in samples})

    earliest_s, latest_s = now_s - guard.max_age_s, now_s + guard.max_ahead_s

    def refusal(device_name: str | None, time_s: float) -> tuple[str, str] | None:
        """The field of a valid item the controller still refuses, and why; None: store it."""
        if device_name not in targets:
            return "device", f"{device_name!r} is not a device of node {node.name!r}"
        if not earliest_s <= time_s <= latest_s:
            return "time_s", guard.time_problem(time_s, now_s) or f"{time_s} is outside the accepted window"
        return None

    def sample_refusal(sample: SampleIn) -> tuple[str, str] | None:
        negative = negative_problem(sample.metric, sample.value)
        if negative is not None:
            return "value", negative
        return ("metric", over_cap[sample.metric]) if sample.metric in over_cap else None

    node_id = node.id
    sample_rows: list[SampleRow] = []
    for position, sample in samples:
        clean = (
            sample.device in targets
            and earliest_s <= sample.time_s <= latest_s
            and sample.value >= 0
            and sample.metric not in over_cap
        )
        problem = None if clean else refusal(sample.device, sample.time_s) or sample_refusal(sample)
        if problem is not None:
            rejected.append(Rejected(index=position, field=f"samples[{position}].{problem[0]}", problem=problem[1]))
            continue
        device_id, campaign_id = targets[sample.device]
        sample_rows.append((campaign_id, node_id, device_id, sample.metric, sample.time_s, sample.value))
    event_rows = []
    for position, event in events:
        problem = refusal(event.device, event.time_s)
        if problem is not None:
            rejected.append(Rejected(index=position, field=f"events[{position}].{problem[0]}", problem=problem[1]))
            continue
        target = targets[event.device]
        device_id, campaign_id = target
        event_rows.append(
            {
                "campaign_id": campaign_id,
                "node_id": node_id,
                "device_id": device_id,
                "time_s": event.time_s,
                "kind": event.kind,
                "severity": event.severity,
                "code": event.code,
                "message": event.message,
                "raw": event.raw,
            }
        )
    try:
        session.add(
            IngestedBatch(batch_id=batch.batch_id, node_id=node.id, samples=len(sample_rows), events=len(event_rows))
        )
        session.flush()
    except IntegrityError:
        # The same batch id arrived twice at once; the other request stored it.
        session.rollback()
        return IngestResult(batch_id=batch.batch_id, duplicate=True, samples_stored=0, events_stored=0, rejected=[])
    try:
        # In the batch id's transaction: a batch that fails here leaves nothing, and its retry is stored once.
        write_samples(session=session, rows=sample_rows)
        if event_rows:
            session.execute(insert(Event), event_rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return IngestResult(
        batch_id=batch.batch_id,
        duplicate=False,
        samples_stored=len(sample_rows),
        events_stored=len(event_rows),
        rejected=rejected,
    )


def record_event(
    *,
    session: Session,
    campaign_id: int | None,
    device_id: int | None,
    time_s: float,
    kind: str,
    severity: str,
    message: str,
    node_id: int | None = None,
    raw: str = "",
) -> None:
    """Store an event the controller itself observed (worker died, hung, restarted)."""
    session.add(
        Event(
            campaign_id=campaign_id,
            node_id=node_id,
            device_id=device_id,
            time_s=time_s,
            kind=kind,
            severity=severity,
            message=message,
            raw=raw,
        )
    )
    session.commit()


def device_series(*, session: Session, campaign_id: int, device_id: int) -> dict[str, Series]:
    """Every metric of one device over a campaign, each ordered by time, in one query."""
    statement = (
        select(MetricName.name, Sample.time_s, Sample.value)
        .join(MetricName, MetricName.id == Sample.metric_id)
        .where(Sample.campaign_id == campaign_id, Sample.device_id == device_id)
        .order_by(MetricName.name, Sample.time_s)
    )
    rows = session.execute(statement).all()
    if not rows:
        return {}
    names = [row[0] for row in rows]
    times = np.fromiter((row[1] for row in rows), dtype=np.float64, count=len(rows))
    values = np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows))
    # Read-only arrays, so each metric's Series is a view into them rather than a copy.
    times.setflags(write=False)
    values.setflags(write=False)
    # Rows arrive grouped by metric: cut where the name changes.
    cuts = [0] + [i for i in range(1, len(names)) if names[i] != names[i - 1]] + [len(names)]
    return {names[a]: Series(times[a:b], values[a:b]) for a, b in itertools.pairwise(cuts)}


def list_events(*, session: Session, campaign_id: int, limit: int | None = 1000) -> list[Event]:
    """A campaign's events, oldest first; all of them when limit is None."""
    statement = select(Event).where(Event.campaign_id == campaign_id).order_by(Event.time_s, Event.id).limit(limit)
    return list(session.scalars(statement))

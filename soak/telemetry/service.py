"""Telemetry ingest (idempotent by batch id, item by item) and the queries detectors use."""

from __future__ import annotations

import itertools
import math
import re
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
from soak.telemetry.schemas import (
    METRIC_PATTERN,
    NAME_PATTERN,
    EventIn,
    IngestResult,
    Rejected,
    SampleIn,
    TelemetryBatch,
)
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
_METRIC = re.compile(METRIC_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_METRIC_MAX_CHARS = 96
_EXACT_INT_MAX = 2**53  # ints up to this become floats exactly, as SampleIn makes them

SampleItem = tuple[float, str | None, str, float]
"""A valid sample: time_s, device (None: the node), metric, value."""
Outcome = IngestResult | BatchRefused | UnknownCampaign
"""A batch stored (or found stored before), or why none of it was."""


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


def _as_float(number: object) -> float | None:
    """A JSON number as SampleIn's float field takes it without coercion; None for anything else."""
    if type(number) is float:
        return number
    if type(number) is int and -_EXACT_INT_MAX <= number <= _EXACT_INT_MAX:
        return float(number)
    return None


def _plain_samples(items: Sequence[object]) -> list[SampleItem] | None:
    """The samples when every item is plainly valid; None when any is not, for SampleIn to say why.

    Takes a subset of what SampleIn takes (exact JSON types, no coercion) with the values it gives, at a fraction of
    its cost: no object per sample, and each device and metric name matched once per batch.
    """
    devices: set[str] = set()
    metrics: set[str] = set()
    valid: list[SampleItem] = []
    append = valid.append
    for item in items:
        if type(item) is not dict:
            return None
        device = item.get("device")
        # time_s, metric and value are required and never None: three keys, or four with device, means no others.
        if len(item) != (4 if "device" in item else 3):
            return None
        time_s = item.get("time_s")
        value = item.get("value")
        metric = item.get("metric")
        # Most are floats already; the call converts the rest.
        if type(time_s) is not float:
            time_s = _as_float(time_s)
        if type(value) is not float:
            value = _as_float(value)
        # Comparisons with NaN are false, so these also refuse NaN and infinities.
        if time_s is None or value is None or not (0.0 < time_s < math.inf and -math.inf < value < math.inf):
            return None
        if type(metric) is not str:
            return None
        if metric not in metrics:
            if len(metric) > _METRIC_MAX_CHARS or _METRIC.fullmatch(metric) is None:
                return None
            metrics.add(metric)
        if device is not None and device not in devices:
            if type(device) is not str or _NAME.fullmatch(device) is None:
                return None
            devices.add(device)
        append((time_s, device, metric, value))
    return valid


def _valid_samples(items: Sequence[object], rejected: list[Rejected]) -> list[tuple[int, SampleItem]]:
    """The valid samples with their positions; the invalid ones go to `rejected`, as SampleIn words them."""
    plain = _plain_samples(items)
    if plain is not None:
        return list(enumerate(plain))
    return [
        (position, (sample.time_s, sample.device, sample.metric, sample.value))
        for position, sample in _validate_items(items, _SAMPLE_LIST, SampleIn, "samples", rejected)
    ]


def read_batches(*, items: Sequence[object], guard: IngestGuard) -> list[TelemetryBatch | BatchRefused]:
    """The batches of a request, each validated alone so that a malformed one is refused without the others.

    Raises BatchRefused when the request as a whole holds more batches or items than one request may.
    """
    problems = guard.request_problems(batches=len(items))
    if problems:
        raise BatchRefused(problems)
    batches: list[TelemetryBatch | BatchRefused] = []
    for position, item in enumerate(items):
        try:
            batches.append(TelemetryBatch.model_validate(item))
        except ValidationError as error:
            batches.append(
                BatchRefused(
                    [
                        f"{field_path(('batches', position, *problem['loc']))}: "
                        f"{str(problem['msg']).removeprefix('Value error, ')}"
                        for problem in error.errors(include_url=False)
                    ]
                )
            )
    valid = [batch for batch in batches if isinstance(batch, TelemetryBatch)]
    problems = guard.count_problems(
        samples=sum(len(batch.samples) for batch in valid),
        events=sum(len(batch.events) for batch in valid),
        holder="request",
    )
    if problems:
        raise BatchRefused(problems)
    return batches


def ingest(
    *, session: Session, batch: TelemetryBatch, guard: IngestGuard | None = None, now_s: float | None = None
) -> IngestResult:
    """Store what is valid in a batch once; a batch id seen before stores nothing again.

    guard: the controller's limits and the metric names its nodes sent (default: SOAK_MAX_* limits, no history).
    Raises BatchRefused or UnknownCampaign when none of the batch can be stored, UnknownNode for a node never
    registered.
    """
    (outcome,) = ingest_batches(session=session, batches=[batch], guard=guard, now_s=now_s)
    if isinstance(outcome, IngestResult):
        return outcome
    raise outcome


def ingest_batches(
    *,
    session: Session,
    batches: Sequence[TelemetryBatch | BatchRefused],
    guard: IngestGuard | None = None,
    now_s: float | None = None,
) -> list[Outcome]:
    """Store what is valid in each batch once, all in one transaction; one outcome per batch, in order.

    Each batch keeps its own id: one stored before (or earlier in the same request) is a duplicate and stores
    nothing again, so a request retried after a lost answer, or resent with batches added, stores each batch once.
    A batch already refused (see read_batches) stays refused. Raises UnknownNode, and stores nothing, when a batch
    names a node never registered.
    """
    guard = guard if guard is not None else IngestGuard.from_settings(Settings())
    now_s = time.time() if now_s is None else now_s
    valid = [batch for batch in batches if isinstance(batch, TelemetryBatch)]
    # Another request storing one of these ids at the same moment fails the flush; the next try sees it stored.
    for _ in range(len(valid)):
        try:
            stored = iter(_store_batches(session=session, batches=valid, guard=guard, now_s=now_s))
            break
        except IntegrityError:
            session.rollback()
    else:
        stored = iter(_store_batches(session=session, batches=valid, guard=guard, now_s=now_s))
    return [next(stored) if isinstance(batch, TelemetryBatch) else batch for batch in batches]


def _store_batches(
    *, session: Session, batches: Sequence[TelemetryBatch], guard: IngestGuard, now_s: float
) -> list[Outcome]:
    node_names = {batch.node for batch in batches}
    nodes = {node.name: node for node in session.scalars(select(Node).where(Node.name.in_(node_names)))}
    for name in sorted(node_names - nodes.keys()):
        raise UnknownNode(f"node: {name!r} is not registered; the agent must PUT /api/v1/nodes/{{name}} first")
    owners = {
        row.batch_id: row.node_id
        for row in session.scalars(
            select(IngestedBatch).where(IngestedBatch.batch_id.in_({batch.batch_id for batch in batches}))
        )
    }
    campaign_ids = {batch.campaign_id for batch in batches if batch.campaign_id is not None}
    known_campaigns = (
        set(session.scalars(select(Campaign.id).where(Campaign.id.in_(campaign_ids)))) if campaign_ids else set()
    )
    devices_by_node: dict[int, list[Device]] = {node.id: [] for node in nodes.values()}
    for device in session.scalars(select(Device).where(Device.node_id.in_(devices_by_node))):
        devices_by_node[device.node_id].append(device)

    outcomes: list[Outcome] = []
    sample_rows: list[SampleRow] = []
    event_rows: list[dict[str, object]] = []
    for batch in batches:
        too_large = guard.count_problems(samples=len(batch.samples), events=len(batch.events))
        if too_large:
            outcomes.append(BatchRefused(too_large))
            continue
        node = nodes[batch.node]
        owner = owners.get(batch.batch_id)
        if owner is not None and owner != node.id:
            # Otherwise a node could claim another node's batch ids ahead of it and have its batches dropped unread.
            outcomes.append(
                BatchRefused([f"batch_id: {batch.batch_id!r} is another node's batch; every node uses ids of its own"])
            )
            continue
        if owner is not None:
            outcomes.append(
                IngestResult(batch_id=batch.batch_id, duplicate=True, samples_stored=0, events_stored=0, rejected=[])
            )
            continue
        # Checked here: the foreign key would fail the insert, and that IntegrityError reads as a duplicate.
        if batch.campaign_id is not None and batch.campaign_id not in known_campaigns:
            outcomes.append(
                UnknownCampaign(
                    f"campaign_id: campaign {batch.campaign_id} does not exist on this controller; nothing was stored"
                )
            )
            continue
        owners[batch.batch_id] = node.id
        samples_before, events_before = len(sample_rows), len(event_rows)
        rejected = _batch_rows(
            batch=batch,
            node=node,
            devices=devices_by_node[node.id],
            guard=guard,
            now_s=now_s,
            sample_rows=sample_rows,
            event_rows=event_rows,
        )
        stored_samples, stored_events = len(sample_rows) - samples_before, len(event_rows) - events_before
        session.add(
            IngestedBatch(batch_id=batch.batch_id, node_id=node.id, samples=stored_samples, events=stored_events)
        )
        outcomes.append(
            IngestResult(
                batch_id=batch.batch_id,
                duplicate=False,
                samples_stored=stored_samples,
                events_stored=stored_events,
                rejected=rejected,
            )
        )
    session.flush()
    try:
        # In the batch ids' transaction: a request that fails here leaves nothing, and its retry is stored once.
        write_samples(session=session, rows=sample_rows)
        if event_rows:
            session.execute(insert(Event), event_rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return outcomes


def _batch_rows(
    *,
    batch: TelemetryBatch,
    node: Node,
    devices: list[Device],
    guard: IngestGuard,
    now_s: float,
    sample_rows: list[SampleRow],
    event_rows: list[dict[str, object]],
) -> list[Rejected]:
    """Append the rows of a batch's valid items to sample_rows and event_rows; the items refused, by position."""
    rejected: list[Rejected] = []
    samples = _valid_samples(batch.samples, rejected)
    events = _validate_items(batch.events, _EVENT_LIST, EventIn, "events", rejected)
    node_campaign = next((d.campaign_id for d in devices if d.campaign_id is not None), None)
    # (device_id, campaign_id) by device name; None names the node itself.
    targets: dict[str | None, tuple[int | None, int | None]] = {
        device.name: (device.id, batch.campaign_id or device.campaign_id) for device in devices
    }
    targets[None] = (None, batch.campaign_id or node_campaign)
    over_cap = guard.metric_problems(node.name, {sample[2] for _, sample in samples})
    earliest_s, latest_s = now_s - guard.max_age_s, now_s + guard.max_ahead_s

    def refusal(device_name: str | None, time_s: float) -> tuple[str, str] | None:
        """The field of a valid item the controller still refuses, and why; None: store it."""
        if device_name not in targets:
            return "device", f"{device_name!r} is not a device of node {node.name!r}"
        if not earliest_s <= time_s <= latest_s:
            return "time_s", guard.time_problem(time_s, now_s) or f"{time_s} is outside the accepted window"
        return None

    def sample_refusal(metric: str, value: float) -> tuple[str, str] | None:
        negative = negative_problem(metric, value)
        if negative is not None:
            return "value", negative
        return ("metric", over_cap[metric]) if metric in over_cap else None

    node_id = node.id
    append = sample_rows.append
    for position, (time_s, device, metric, value) in samples:
        target = targets.get(device)
        if target is None or not (earliest_s <= time_s <= latest_s and value >= 0 and metric not in over_cap):
            problem = refusal(device, time_s) or sample_refusal(metric, value)
            if problem is not None:
                rejected.append(Rejected(index=position, field=f"samples[{position}].{problem[0]}", problem=problem[1]))
                continue
            target = targets[device]
        append((target[1], node_id, target[0], metric, time_s, value))
    for position, event in events:
        problem = refusal(event.device, event.time_s)
        if problem is not None:
            rejected.append(Rejected(index=position, field=f"events[{position}].{problem[0]}", problem=problem[1]))
            continue
        device_id, campaign_id = targets[event.device]
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
    return rejected


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

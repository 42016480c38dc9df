"""The raw-data export written beside a report: the campaign's samples, hour rollups, events and findings as CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from soak.nodes.models import Device, Node
from soak.report.model import FindingEntry
from soak.telemetry.models import Event, Sample
from soak.telemetry.rollup_models import HourRollup

EXPORT_DIR = "data"
READ_BATCH_ROWS = 50_000


def _write(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def export_campaign(*, session: Session, campaign_id: int, findings: list[FindingEntry], out_dir: Path) -> list[Path]:
    """Write samples.csv, rollup_1h.csv, events.csv and findings.csv under out_dir/data; their paths."""
    directory = out_dir / EXPORT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    devices = {device_id: name for device_id, name in session.execute(select(Device.id, Device.name))}
    nodes = {node_id: name for node_id, name in session.execute(select(Node.id, Node.name))}
    samples = session.execute(
        select(Sample.time_s, Sample.node_id, Sample.device_id, Sample.metric, Sample.value)
        .where(Sample.campaign_id == campaign_id)
        .order_by(Sample.time_s, Sample.id)
        .execution_options(yield_per=READ_BATCH_ROWS)
    )
    rollups = session.execute(
        select(
            HourRollup.device_id,
            HourRollup.metric,
            HourRollup.bucket_s,
            HourRollup.count,
            HourRollup.sum_value,
            HourRollup.min_value,
            HourRollup.max_value,
            HourRollup.last_value,
        )
        .where(HourRollup.campaign_id == campaign_id)
        .order_by(HourRollup.device_id, HourRollup.metric, HourRollup.bucket_s)
        .execution_options(yield_per=READ_BATCH_ROWS)
    )
    events = session.scalars(select(Event).where(Event.campaign_id == campaign_id).order_by(Event.time_s, Event.id))
    return [
        _write(
            directory / "samples.csv",
            ["time_s", "node", "device", "metric", "value"],
            ((t, nodes.get(n, n), devices.get(d, "") if d is not None else "", m, v) for t, n, d, m, v in samples),
        ),
        _write(
            directory / "rollup_1h.csv",
            ["device", "metric", "bucket_s", "count", "mean", "min", "max", "last"],
            (
                (devices.get(d, d), m, b, c, total / c if c else "", low, high, last)
                for d, m, b, c, total, low, high, last in rollups
            ),
        ),
        _write(
            directory / "events.csv",
            ["time_s", "node", "device", "kind", "severity", "code", "message", "raw"],
            (
                (
                    e.time_s,
                    nodes.get(e.node_id, "") if e.node_id is not None else "",
                    devices.get(e.device_id, "") if e.device_id is not None else "",
                    e.kind,
                    e.severity,
                    "" if e.code is None else e.code,
                    e.message,
                    e.raw,
                )
                for e in events
            ),
        ),
        _write(
            directory / "findings.csv",
            [
                "id",
                "device",
                "kind",
                "subject",
                "severity",
                "onset_s",
                "detected_s",
                "last_seen_s",
                "explanation",
                "evidence_json",
            ],
            (
                (
                    f.id,
                    f.device or "",
                    f.kind,
                    f.subject,
                    f.severity,
                    f.onset_s,
                    f.detected_s,
                    f.last_seen_s,
                    f.explanation,
                    json.dumps(f.evidence, sort_keys=True),
                )
                for f in findings
            ),
        ),
    ]

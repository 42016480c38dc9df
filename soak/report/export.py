"""The raw-data export written beside a report: the campaign's samples, hour rollups, events and findings as CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soak.nodes.models import Device, Node
from soak.report.model import FindingEntry
from soak.telemetry.models import MetricName, Sample
from soak.telemetry.rollup_models import HourRollup
from soak.telemetry.service import list_events

EXPORT_DIR = "data"
READ_BATCH_ROWS = 50_000
# About 100 MB of CSV; weeks of 1 Hz samples would be tens of gigabytes, so their hour rollups stand in for them.
MAX_EXPORTED_SAMPLES = 2_000_000


def _write(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class Export:
    """The files written, and what was left out and why (None when nothing was)."""

    files: list[Path]
    left_out: str | None


def export_campaign(*, session: Session, campaign_id: int, findings: list[FindingEntry], out_dir: Path) -> Export:
    """Write samples.csv (when not too many), rollup_1h.csv, events.csv and findings.csv under out_dir/data."""
    directory = out_dir / EXPORT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    devices = {device_id: name for device_id, name in session.execute(select(Device.id, Device.name))}
    nodes = {node_id: name for node_id, name in session.execute(select(Node.id, Node.name))}
    # Counting stops past the limit, so that weeks of raw samples are not counted only to be left out.
    capped = select(Sample.id).where(Sample.campaign_id == campaign_id).limit(MAX_EXPORTED_SAMPLES + 1).subquery()
    raw_rows = session.scalar(select(func.count()).select_from(capped)) or 0
    rollups = session.execute(
        select(
            HourRollup.device_id,
            MetricName.name,
            HourRollup.bucket_s,
            HourRollup.count,
            HourRollup.sum_value,
            HourRollup.min_value,
            HourRollup.max_value,
            HourRollup.last_value,
        )
        .join(MetricName, MetricName.id == HourRollup.metric_id)
        .where(HourRollup.campaign_id == campaign_id)
        .order_by(HourRollup.device_id, MetricName.name, HourRollup.bucket_s)
        .execution_options(yield_per=READ_BATCH_ROWS)
    )
    events = list_events(session=session, campaign_id=campaign_id, limit=None)
    files = []
    left_out = None
    if raw_rows <= MAX_EXPORTED_SAMPLES:
        samples = session.execute(
            select(Sample.time_s, Sample.node_id, Sample.device_id, MetricName.name, Sample.value)
            .join(MetricName, MetricName.id == Sample.metric_id)
            .where(Sample.campaign_id == campaign_id)
            .order_by(Sample.time_s, Sample.id)
            .execution_options(yield_per=READ_BATCH_ROWS)
        )
        files.append(
            _write(
                directory / "samples.csv",
                ["time_s", "node", "device", "metric", "value"],
                ((t, nodes.get(n, n), devices.get(d, "") if d is not None else "", m, v) for t, n, d, m, v in samples),
            )
        )
    else:
        left_out = (
            f"samples.csv: more than {MAX_EXPORTED_SAMPLES:,} raw samples are stored, so they are left out; "
            "rollup_1h.csv holds every hour of every device metric"
        )
    files += [
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
    return Export(files=files, left_out=left_out)

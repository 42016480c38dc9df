"""The hand-off from workers to their node agent: one JSON file per report, written atomically.

Once spooled, a file moves to the agent's spool folder and stays there until the controller has acknowledged the
batch that carried it, so a report survives an agent restart and a controller outage.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    """What a worker observed in one sample interval."""

    campaign_id: int
    device: str
    pid: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def write_report(inbox_dir: Path, report: WorkerReport) -> Path:
    """Drop a report where the agent will pick it up."""
    inbox_dir.mkdir(parents=True, exist_ok=True)
    final = inbox_dir / f"{time.time_ns()}-{report.pid}.json"
    with tempfile.NamedTemporaryFile("w", dir=inbox_dir, suffix=".tmp", delete=False) as handle:
        json.dump(asdict(report), handle)
    os.replace(handle.name, final)
    return final


def pending_paths(inbox_dir: Path, *, limit: int) -> list[Path]:
    """The oldest report files in the inbox, oldest first."""
    if not inbox_dir.is_dir():
        return []
    names = sorted(entry.name for entry in os.scandir(inbox_dir) if entry.name.endswith(".json"))
    return [inbox_dir / name for name in names[:limit]]


def read_reports(paths: list[Path]) -> list[tuple[Path, WorkerReport]]:
    """The reports in these files; an unreadable file is moved aside as .bad, never retried forever."""
    reports: list[tuple[Path, WorkerReport]] = []
    for path in paths:
        try:
            reports.append((path, WorkerReport(**json.loads(path.read_text()))))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError) as error:
            log.warning("moving unreadable worker report %s aside: %s", path, error)
            path.rename(path.with_suffix(".bad"))
    return reports

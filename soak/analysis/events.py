"""Findings from discrete events: silent data corruption, critical driver errors, unstable workers."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from soak.analysis.series import Detection

WORKER_TROUBLE = {"worker_died", "worker_hang", "worker_crash_loop"}


@dataclass(frozen=True)
class EventRecord:
    """The fields of a stored event the detectors need."""

    device: str | None
    time_s: float
    kind: str
    severity: str
    code: int | None


def detect_event_findings(
    events: Sequence[EventRecord],
    *,
    max_sdc_events: int,
    max_warn_driver_errors: int,
    max_fail_driver_errors: int,
) -> dict[tuple[str | None, str], Detection]:
    """One detection per (device, subject): SDC, driver errors by severity, worker restarts."""
    grouped: dict[tuple[str | None, str], list[EventRecord]] = defaultdict(list)
    for event in events:
        if event.kind == "sdc":
            grouped[(event.device, "sdc")].append(event)
        elif event.kind == "driver_error" and event.severity in {"warning", "critical"}:
            grouped[(event.device, f"driver_error.{event.severity}")].append(event)
        elif event.kind in WORKER_TROUBLE:
            grouped[(event.device, "worker")].append(event)
    detections: dict[tuple[str | None, str], Detection] = {}
    for (device, subject), found in grouped.items():
        detection = _judge(subject, found, max_sdc_events, max_warn_driver_errors, max_fail_driver_errors)
        if detection is not None:
            detections[(device, subject)] = detection
    return detections


def _judge(subject: str, events: list[EventRecord], max_sdc: int, max_warn: int, max_fail: int) -> Detection | None:
    count = len(events)
    onset_s, last_s = events[0].time_s, events[-1].time_s
    codes = Counter(event.code for event in events if event.code is not None)
    code_text = ", ".join(f"XID {code} ×{n}" for code, n in codes.most_common()) or "no code"
    evidence: dict[str, float | int | str] = {"count": count, "first_s": onset_s, "last_s": last_s}
    if subject == "sdc":
        if count <= max_sdc:
            return None
        return Detection(
            "silent_data_corruption",
            "critical",
            onset_s,
            last_s,
            f"{count} wrong result(s) without any error (limit {max_sdc}); do not trust this device's "
            "output until it passes a diagnostic.",
            evidence,
        )
    if subject == "driver_error.critical":
        if count <= max_fail:
            return None
        evidence["codes"] = code_text
        return Detection(
            "driver_error",
            "critical",
            onset_s,
            last_s,
            f"{count} FAIL-class driver error(s) ({code_text}); the device needs a reset or RMA.",
            evidence,
        )
    if subject == "driver_error.warning":
        if count <= max_warn:
            return None
        evidence["codes"] = code_text
        return Detection(
            "driver_error",
            "warning",
            onset_s,
            last_s,
            f"{count} WARN-class driver errors ({code_text}), above the limit of {max_warn}.",
            evidence,
        )
    kinds = Counter(event.kind for event in events)
    evidence.update({kind: n for kind, n in kinds.items()})
    severity = "critical" if "worker_crash_loop" in kinds else "warning"
    what = ", ".join(f"{n} {kind.removeprefix('worker_').replace('_', ' ')}" for kind, n in kinds.items())
    return Detection(
        "worker_instability",
        severity,
        onset_s,
        last_s,
        f"The device's worker had to be replaced: {what}.",
        evidence,
    )

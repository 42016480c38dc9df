"""Driver-error detector: a FAIL-class code at once, WARN-class codes by their daily rate or a burst."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from agents.xid import CATALOGUE
from soak.analysis.series import Detection, format_utc
from soak.analysis.telemetry import DeviceTelemetry, EventRecord

SECONDS_PER_DAY = 86400.0
# Vendors whose error codes are NVIDIA XIDs: the simulated backend and imported telemetry (vendor unknown)
# speak them too.
XID_VENDORS = frozenset({"nvidia", "simulated", "unknown"})


class DriverErrorLimits(BaseModel):
    """How many driver errors a device may raise, by class: FAIL-class counts, WARN-class rates and bursts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_fail: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="FAIL-class (critical) driver errors tolerated before a critical finding; 0 flags the first",
    )
    max_warn_per_day: int = Field(
        default=3,
        ge=0,
        le=1_000_000,
        description="WARN-class errors of one code tolerated in any 24 hours",
    )
    burst_window_s: float = Field(
        default=600.0,
        gt=0.0,
        le=SECONDS_PER_DAY,
        description="length of the window in which burst_count WARN-class errors of one code make a burst",
    )
    burst_count: int = Field(
        default=3,
        ge=2,
        le=1_000_000,
        description="WARN-class errors of one code within burst_window_s that make a finding at once",
    )


@dataclass(frozen=True)
class _Code:
    """How one code is named and explained in a sentence."""

    subject: str
    name: str
    meaning: str


def detect_driver_errors(telemetry: DeviceTelemetry, limits: DriverErrorLimits) -> list[Detection]:
    """One finding per driver-error code of the device: FAIL class beyond max_fail, WARN class by rate or burst."""
    by_class: dict[str, dict[int | None, list[float]]] = {"critical": defaultdict(list), "warning": defaultdict(list)}
    for event in sorted(_driver_errors(telemetry), key=lambda event: event.time_s):
        if event.severity in by_class:
            by_class[event.severity][event.code].append(event.time_s)
    observed_days = max(telemetry.end_s - telemetry.start_s, 1.0) / SECONDS_PER_DAY
    detections = _fail_class(telemetry, by_class["critical"], limits, observed_days)
    for code, times in by_class["warning"].items():
        detection = _warn_class(telemetry, code, np.asarray(times), limits, observed_days)
        if detection is not None:
            detections.append(detection)
    return detections


def _driver_errors(telemetry: DeviceTelemetry) -> list[EventRecord]:
    return [event for event in telemetry.events if event.kind == "driver_error" and event.time_s <= telemetry.end_s]


def _fail_class(
    telemetry: DeviceTelemetry,
    times_by_code: dict[int | None, list[float]],
    limits: DriverErrorLimits,
    observed_days: float,
) -> list[Detection]:
    all_times_s = np.sort(np.concatenate([np.asarray(times) for times in times_by_code.values()] or [np.empty(0)]))
    if all_times_s.size <= limits.max_fail:
        return []
    # The device is out of limits from the error that exceeds max_fail on; a code first seen later is flagged
    # when it appears.
    exceeded_s = float(all_times_s[limits.max_fail])
    detections = []
    for code, times in times_by_code.items():
        named = _name(telemetry, code)
        count = len(times)
        first_s, last_s = times[0], times[-1]
        rate_per_day = count / observed_days
        when = (
            f"once at {format_utc(first_s)}"
            if count == 1
            else f"{count} times from {format_utc(first_s)} to {format_utc(last_s)} ({rate_per_day:.2g}/day)"
        )
        explanation = (
            f"FAIL-class {named.name} ({named.meaning}) seen {when}, {limits.max_fail} FAIL-class errors tolerated: "
            f"{_action(code, telemetry, 'take the device out of the campaign and reset it')}."
        )
        detections.append(
            Detection(
                device=telemetry.device,
                kind="driver_error",
                subject=named.subject,
                severity="critical",
                onset_s=first_s,
                detected_s=max(first_s, exceeded_s),
                last_seen_s=last_s,
                explanation=explanation,
                evidence={
                    "code": named.name,
                    "class": "fail",
                    "count": count,
                    "rate_per_day": rate_per_day,
                    "fail_class_count": int(all_times_s.size),
                    "max_fail": limits.max_fail,
                    "first_s": first_s,
                    "last_s": last_s,
                },
            )
        )
    return detections


def _warn_class(
    telemetry: DeviceTelemetry,
    code: int | None,
    times_s: npt.NDArray[np.float64],
    limits: DriverErrorLimits,
    observed_days: float,
) -> Detection | None:
    index = np.arange(times_s.size)
    # Errors in the trailing day and the trailing burst window, each counted at the moment of an error: the
    # count can only cross a limit when an error arrives.
    day_start = np.searchsorted(times_s, times_s - SECONDS_PER_DAY, side="right")
    burst_start = np.searchsorted(times_s, times_s - limits.burst_window_s, side="right")
    per_day = index - day_start + 1
    per_burst = index - burst_start + 1
    over_rate = per_day > limits.max_warn_per_day
    burst = per_burst >= limits.burst_count
    crossed = np.flatnonzero(over_rate | burst)
    if crossed.size == 0:
        return None
    first = int(crossed[0])
    is_burst = bool(burst[first])
    window_start = int(burst_start[first] if is_burst else day_start[first])
    onset_s, detected_s = float(times_s[window_start]), float(times_s[first])
    named = _name(telemetry, code)
    count = int(times_s.size)
    peak_per_day = int(per_day.max())
    rate_per_day = count / observed_days
    if is_burst:
        rule = (
            f"a burst of {int(per_burst[first])} within {limits.burst_window_s / 60:.0f} min "
            f"(burst limit {limits.burst_count})"
        )
    else:
        rule = f"{int(per_day[first])} within 24 h (limit {limits.max_warn_per_day} per day)"
    explanation = (
        f"WARN-class {named.name} ({named.meaning}): {rule} from {format_utc(onset_s)}; {_times(count)} in all, "
        f"{rate_per_day:.2g}/day, at most {peak_per_day} in a day: "
        f"{_action(code, telemetry, 'watch the rate and reset the device at the next convenient moment')}."
    )
    return Detection(
        device=telemetry.device,
        kind="driver_error",
        subject=named.subject,
        severity="warning",
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=float(times_s[-1]),
        explanation=explanation,
        evidence={
            "code": named.name,
            "class": "warn",
            "rule": "burst" if is_burst else "rate",
            "count": count,
            "rate_per_day": rate_per_day,
            "max_per_day": peak_per_day,
            "max_in_burst_window": int(per_burst.max()),
            "max_warn_per_day": limits.max_warn_per_day,
            "burst_count": limits.burst_count,
            "burst_window_s": limits.burst_window_s,
            "first_s": float(times_s[0]),
            "last_s": float(times_s[-1]),
        },
    )


def _is_xid(telemetry: DeviceTelemetry) -> bool:
    return telemetry.vendor.lower() in XID_VENDORS


def _name(telemetry: DeviceTelemetry, code: int | None) -> _Code:
    if code is None:
        return _Code("code.none", "a driver error without a code", "see the event messages")
    if _is_xid(telemetry):
        xid = CATALOGUE.get(code)
        return _Code(f"xid.{code}", f"XID {code}", xid.title if xid is not None else "not in soak's XID catalogue")
    return _Code(f"code.{code}", f"{telemetry.vendor} error code {code}", "see the vendor's error catalogue")


def _action(code: int | None, telemetry: DeviceTelemetry, default: str) -> str:
    xid = CATALOGUE.get(code) if code is not None and _is_xid(telemetry) else None
    return xid.action if xid is not None else default


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"

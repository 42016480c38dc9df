"""Thermal and power detector: throttle residency by reason, temperature margin, and the sustained-vs-burst tax."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

from agents.nvml.clock_events import CLOCK_EVENT_FLAGS, GPU_IDLE
from soak.analysis.series import Detection, Series, capitalised, format_p_value, format_utc
from soak.analysis.telemetry import DeviceTelemetry

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0
# Below this share of busy time a throttle reason is not worth a line in the report.
REPORTED_MIN_RESIDENCY = 0.01
# A trailing window is judged only once the device was busy for this share of it: a few busy minutes in an
# idle hour say little about how it behaves under load.
MIN_BUSY_SHARE_OF_WINDOW = 0.25
# The margin counts as low when its lower quartile over the margin window is below the limit, i.e. when at
# least this share of the window's intervals were that hot: one hot reading is not enough.
MIN_HOT_SHARE_OF_WINDOW = 0.25
# Five falling daily means are the fewest Kendall's test can call significant at 1 %.
MIN_TREND_DAYS = 5
# A day's mean stands for the day only when this share of its evaluation intervals hold readings.
MIN_DAY_COVERAGE = 0.5
# The cheap least-squares screen lets through trends up to this many times slower than the horizon allows,
# so that only the robust fit, not the screen, decides.
TREND_SCREEN_SLACK = 2.0
# The trend quoted beside a low margin covers the last hours, where a runaway outweighs the diurnal cycle, in
# quarter-hour means that its noise leaves nearly independent.
RECENT_TREND_S = 3 * 3600.0
RECENT_TREND_BLOCKS = 12
MIN_TAX_SAMPLES = 10
DOMINANT_REASON_SHARE = 0.5

SW_POWER_CAP = CLOCK_EVENT_FLAGS["sw_power_cap"]
HW_SLOWDOWN = CLOCK_EVENT_FLAGS["hw_slowdown"]
SW_THERMAL_SLOWDOWN = CLOCK_EVENT_FLAGS["sw_thermal_slowdown"]
HW_THERMAL_SLOWDOWN = CLOCK_EVENT_FLAGS["hw_thermal_slowdown"]
HW_POWER_BRAKE_SLOWDOWN = CLOCK_EVENT_FLAGS["hw_power_brake_slowdown"]


class ThermalLimits(BaseModel):
    """When throttling, a shrinking temperature margin or the sustained-vs-burst tax becomes a warning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_throttle_residency: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Share of busy time a device may spend in thermal, hardware-slowdown or power-brake "
        "throttling over the residency window before a warning",
    )
    max_power_cap_residency: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of busy time a device may sit at its power cap before a warning; 1.0 reports the "
        "cap and its cost as information only",
    )
    residency_window_s: float = Field(
        default=3600.0,
        ge=60.0,
        le=7 * SECONDS_PER_DAY,
        description="Trailing window over which throttle residency is judged, in seconds",
    )
    min_temperature_margin_c: float = Field(
        default=5.0,
        ge=0.0,
        le=50.0,
        description="Degrees Celsius the temperature must stay below the slowdown threshold",
    )
    margin_window_s: float = Field(
        default=900.0,
        ge=60.0,
        le=SECONDS_PER_DAY,
        description="Trailing window whose lower-quartile temperature margin is compared with the limit, in seconds",
    )
    margin_horizon_days: float = Field(
        default=7.0,
        gt=0.0,
        le=365.0,
        description="A significant falling margin trend that reaches zero within this many days is a warning",
    )
    trend_window_days: int = Field(
        default=7,
        ge=MIN_TREND_DAYS,
        le=90,
        description="Trailing number of daily mean margins the trend is fitted to",
    )
    significance: float = Field(
        default=0.01,
        gt=0.0,
        lt=0.5,
        description="One-sided p-value below which a falling margin trend counts as real",
    )
    max_sustained_tax: float = Field(
        default=0.15,
        gt=0.0,
        lt=1.0,
        description="Share of burst throughput a workload may lose under sustained load before a warning",
    )
    burst_window_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="First seconds of each steady window (or after warm-up) whose throughput is the burst level",
    )
    evaluation_interval_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="How often the rules are evaluated, in seconds: the resolution of detection times",
    )

    @model_validator(mode="after")
    def _windows_hold_an_interval(self) -> ThermalLimits:
        for name in ("residency_window_s", "margin_window_s"):
            if getattr(self, name) < self.evaluation_interval_s:
                raise ValueError(
                    f"{name} ({getattr(self, name)} s) must be at least evaluation_interval_s "
                    f"({self.evaluation_interval_s} s); lengthen the window or shorten the interval"
                )
        return self


@dataclass(frozen=True)
class _Reason:
    """One throttle finding: the bits that make it, and what on-call should do about it."""

    subject: str
    bits: int
    # Bits that, also set, make this reason a symptom of another one rather than a finding of its own.
    explained_by: int
    title: str
    # How the reason reads after "throughput was lost ...".
    while_phrase: str
    action: str
    violation_metric: str | None
    violation_name: str = ""


THROTTLE_REASONS = (
    _Reason(
        subject="power_cap",
        bits=SW_POWER_CAP,
        explained_by=0,
        title="the power cap",
        while_phrase="at the power cap",
        action="raise the power limit or budget for the lower clocks",
        violation_metric="device.violation_power_s",
        violation_name="power violation",
    ),
    _Reason(
        subject="thermal",
        bits=SW_THERMAL_SLOWDOWN | HW_THERMAL_SLOWDOWN,
        explained_by=0,
        title="thermal slowdown",
        while_phrase="under thermal slowdown",
        action="check cooling, airflow and the thermal interface",
        violation_metric="device.violation_thermal_s",
        violation_name="thermal violation",
    ),
    # NVML also raises hw_slowdown for a hardware thermal slowdown or a power brake; only the rest is a
    # supply or hardware fault of its own.
    _Reason(
        subject="hw_slowdown",
        bits=HW_SLOWDOWN,
        explained_by=HW_THERMAL_SLOWDOWN | HW_POWER_BRAKE_SLOWDOWN,
        title="hardware slowdown",
        while_phrase="under hardware slowdown",
        action="suspect the power supply or a hardware fault, and RMA the device if it persists",
        violation_metric=None,
    ),
    _Reason(
        subject="power_brake",
        bits=HW_POWER_BRAKE_SLOWDOWN,
        explained_by=0,
        title="the external power brake",
        while_phrase="under the external power brake",
        action="check the node's power supplies and power delivery, whose power-brake signal slows the device",
        violation_metric=None,
    ),
)
ANY_THROTTLE_BITS = SW_POWER_CAP | HW_SLOWDOWN | SW_THERMAL_SLOWDOWN | HW_THERMAL_SLOWDOWN | HW_POWER_BRAKE_SLOWDOWN


def detect_thermal(telemetry: DeviceTelemetry, limits: ThermalLimits) -> list[Detection]:
    """Throttling by reason, a low or falling temperature margin, and each workload's sustained-vs-burst tax."""
    return [
        *_detect_throttling(telemetry, limits),
        *_detect_margin(telemetry, limits),
        *_detect_sustained_tax(telemetry, limits),
    ]


@dataclass(frozen=True)
class _Intervals:
    """Samples grouped into evaluation intervals counted from warm-up end."""

    index: npt.NDArray[np.int64]
    count: int
    has_samples: npt.NDArray[np.bool_]
    # Time of each interval's last sample: when an on-line run had all the data its decision used.
    last_sample_s: npt.NDArray[np.float64]

    @classmethod
    def of(cls, time_s: npt.NDArray[np.float64], origin_s: float, interval_s: float) -> _Intervals:
        index = np.floor((time_s - origin_s) / interval_s).astype(np.int64)
        count = int(index[-1]) + 1
        samples = np.bincount(index, minlength=count)
        last = np.maximum(np.cumsum(samples) - 1, 0)
        return cls(index=index, count=count, has_samples=samples > 0, last_sample_s=time_s[last])

    def sums(self, weights: npt.NDArray[np.float64] | npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        return np.asarray(np.bincount(self.index, weights=weights, minlength=self.count), dtype=np.float64)


def _trailing_sums(per_interval: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """Sum over the `width` intervals ending at each interval."""
    cumulative = np.concatenate(([0.0], np.cumsum(per_interval)))
    upper = np.arange(1, per_interval.size + 1)
    sums: npt.NDArray[np.float64] = cumulative[upper] - cumulative[np.maximum(upper - width, 0)]
    return sums


def _aligned(series: Series, time_s: npt.NDArray[np.float64], tolerance_s: float) -> npt.NDArray[np.float64]:
    """The series' latest reading at or before each time, NaN where none is within the tolerance."""
    readings = series.finite()
    if len(readings) == 0:
        return np.full(time_s.size, np.nan)
    position = np.searchsorted(readings.time_s, time_s, side="right") - 1
    clipped = np.maximum(position, 0)
    fresh = (position >= 0) & (time_s - readings.time_s[clipped] <= tolerance_s)
    values: npt.NDArray[np.float64] = np.where(fresh, readings.values[clipped], np.nan)
    return values


def _counter_increase(series: Series, start_s: float, end_s: float) -> float:
    """How much a cumulative counter rose between two times; a reset (driver reload) restarts the count."""
    readings = series.finite()
    first = int(np.searchsorted(readings.time_s, start_s, side="left"))
    last = int(np.searchsorted(readings.time_s, end_s, side="right"))
    return float(np.sum(np.maximum(np.diff(readings.values[first:last]), 0.0)))


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def _duration(seconds: float) -> str:
    if seconds >= 3600.0 and seconds % 3600.0 == 0.0:
        return f"{seconds / 3600.0:.0f} h"
    if seconds >= 60.0 and seconds % 60.0 == 0.0:
        return f"{seconds / 60.0:.0f} min"
    return f"{seconds:g} s"


def _detect_throttling(telemetry: DeviceTelemetry, limits: ThermalLimits) -> list[Detection]:
    reasons = telemetry.metric("device.clock_event_reasons").after(telemetry.warmup_end_s).finite()
    if len(reasons) == 0:
        return []
    masks = reasons.values.astype(np.int64)
    busy = (masks & GPU_IDLE) == 0
    if not busy.any():
        return []
    intervals = _Intervals.of(reasons.time_s, telemetry.warmup_end_s, limits.evaluation_interval_s)
    width = max(1, round(limits.residency_window_s / limits.evaluation_interval_s))
    busy_in_window = _trailing_sums(intervals.sums(busy), width)
    min_busy_samples = MIN_BUSY_SHARE_OF_WINDOW * limits.residency_window_s / telemetry.sample_interval_s
    judged = intervals.has_samples & (busy_in_window >= min_busy_samples)
    clock_mhz = _aligned(telemetry.metric("device.sm_clock_mhz"), reasons.time_s, telemetry.sample_interval_s)
    max_clock_mhz = _aligned(telemetry.metric("device.sm_clock_max_mhz"), reasons.time_s, SECONDS_PER_DAY)
    unthrottled_mhz = _mean_or_nan(clock_mhz[busy & ((masks & ANY_THROTTLE_BITS) == 0)])

    detections = []
    for reason in THROTTLE_REASONS:
        throttled = busy & ((masks & reason.bits) != 0) & ((masks & reason.explained_by) == 0)
        if not throttled.any():
            continue
        limit = limits.max_power_cap_residency if reason.subject == "power_cap" else limits.max_throttle_residency
        throttled_in_window = _trailing_sums(intervals.sums(throttled), width)
        over = judged & (throttled_in_window > limit * busy_in_window)
        residency = float(np.sum(throttled) / np.sum(busy))
        evidence: dict[str, float | int | str] = {
            "residency": residency,
            "limit_residency": limit,
            "busy_s": float(np.sum(busy)) * telemetry.sample_interval_s,
            "throttled_s": float(np.sum(throttled)) * telemetry.sample_interval_s,
            "window_s": limits.residency_window_s,
        }
        throttled_time_s = reasons.time_s[throttled]
        if over.any():
            first = int(np.argmax(over))
            detected_s = float(intervals.last_sample_s[first])
            window_start_s = telemetry.warmup_end_s + (first - width + 1) * limits.evaluation_interval_s
            onset_s = float(throttled_time_s[np.searchsorted(throttled_time_s, window_start_s)])
            window_residency = float(throttled_in_window[first] / busy_in_window[first])
            evidence["window_residency"] = window_residency
            evidence["window_start_s"] = max(window_start_s, telemetry.warmup_end_s)
            severity = "warning"
            rule = (
                f"since {format_utc(onset_s)} held the clocks down {_percent(window_residency)} of the busy time in "
                f"the {_duration(limits.residency_window_s)} before {format_utc(detected_s)} (limit {_percent(limit)}) "
                f"and {_percent(residency)} of it since warm-up"
            )
        else:
            if residency < REPORTED_MIN_RESIDENCY:
                continue
            # Information is due once the share since warm-up, over enough busy time, reached the floor.
            busy_so_far = np.cumsum(busy)
            reported = (busy_so_far >= min_busy_samples) & (
                np.cumsum(throttled) >= REPORTED_MIN_RESIDENCY * busy_so_far
            )
            if not reported.any():
                continue
            detected_s = float(reasons.time_s[int(np.argmax(reported))])
            onset_s = float(throttled_time_s[0])
            severity = "info"
            rule = f"since {format_utc(onset_s)} held the clocks down {_percent(residency)} of the busy time"
        last_seen_s = float(throttled_time_s[-1])
        violation_clause = ""
        if reason.violation_metric is not None and len(telemetry.metric(reason.violation_metric)) > 0:
            counter = telemetry.metric(reason.violation_metric)
            violation_s = _counter_increase(counter, telemetry.warmup_end_s, telemetry.end_s)
            evidence["violation_s"] = violation_s
            evidence["violation_s_in_window"] = _counter_increase(
                counter, detected_s - limits.residency_window_s, detected_s
            )
            violation_clause = f"; NVML counts {violation_s:,.0f} s of {reason.violation_name} since warm-up"
        clock_clause = _clock_cost(clock_mhz[throttled], unthrottled_mhz, max_clock_mhz[throttled], evidence)
        if reason.subject == "power_cap":
            power_w = _aligned(telemetry.metric("device.power_w"), throttled_time_s, telemetry.sample_interval_s)
            power_limit_w = _aligned(telemetry.metric("device.power_limit_w"), throttled_time_s, SECONDS_PER_DAY)
            if np.isfinite(power_w).any() and np.isfinite(power_limit_w).any():
                evidence["power_at_cap_w"] = float(np.nanmean(power_w))
                evidence["power_limit_w"] = float(np.nanmean(power_limit_w))
        action = reason.action
        if reason.subject == "power_cap" and severity == "info":
            action = "not a fault by itself, this is what the cap costs"
        explanation = f"{capitalised(reason.title)} {rule}{violation_clause}{clock_clause}: {action}."
        detections.append(
            Detection(
                device=telemetry.device,
                kind="throttling",
                subject=reason.subject,
                severity=severity,
                onset_s=onset_s,
                detected_s=detected_s,
                last_seen_s=last_seen_s,
                explanation=explanation,
                evidence=evidence,
            )
        )
    return detections


def _mean_or_nan(values: npt.NDArray[np.float64]) -> float:
    finite = values[np.isfinite(values)]
    return float(np.mean(finite)) if finite.size else math.nan


def _clock_cost(
    throttled_mhz: npt.NDArray[np.float64],
    unthrottled_mhz: float,
    max_mhz: npt.NDArray[np.float64],
    evidence: dict[str, float | int | str],
) -> str:
    """What the throttling costs in SM clock, against unthrottled busy time or, lacking any, the maximum clock."""
    throttled = _mean_or_nan(throttled_mhz)
    reference, against = unthrottled_mhz, "unthrottled"
    if math.isnan(reference):
        reference, against = _mean_or_nan(max_mhz), "its maximum"
    if math.isnan(throttled) or math.isnan(reference) or reference <= 0.0:
        return ""
    loss = 1.0 - throttled / reference
    evidence["clock_throttled_mhz"] = throttled
    evidence["clock_reference_mhz"] = reference
    evidence["clock_loss"] = loss
    return f"; SM clock {throttled:,.0f} MHz against {reference:,.0f} MHz {against} ({_percent(loss)} lower)"


def _detect_margin(telemetry: DeviceTelemetry, limits: ThermalLimits) -> list[Detection]:
    temperature = telemetry.metric("device.temperature_c").after(telemetry.warmup_end_s).finite()
    slowdown = telemetry.metric("device.temperature_slowdown_c").finite()
    if len(temperature) == 0 or len(slowdown) == 0:
        return []
    # The threshold is a property of the device: before its first reading, that reading stands for it.
    position = np.maximum(np.searchsorted(slowdown.time_s, temperature.time_s, side="right") - 1, 0)
    threshold_c = slowdown.values[position]
    margin = Series(temperature.time_s, threshold_c - temperature.values)
    intervals = _Intervals.of(margin.time_s, telemetry.warmup_end_s, limits.evaluation_interval_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        interval_margin_c = intervals.sums(margin.values) / intervals.sums(np.ones(len(margin)))

    level = _low_margin(margin, intervals, interval_margin_c, telemetry, limits)
    trend = _falling_margin(intervals, interval_margin_c, telemetry, limits)
    if level is None and trend is None:
        return []
    first = min((rule for rule in (level, trend) if rule is not None), key=lambda rule: rule.detected_s)
    evidence: dict[str, float | int | str] = {
        "slowdown_threshold_c": float(threshold_c[-1]),
        "limit_margin_c": limits.min_temperature_margin_c,
        "margin_now_c": float(interval_margin_c[intervals.has_samples][-1]),
        "min_margin_c": float(np.min(margin.values)),
    }
    if level is not None:
        evidence.update(level.evidence)
    if trend is not None:
        evidence.update(trend.evidence)
    return [
        Detection(
            device=telemetry.device,
            kind="thermal_margin",
            subject="temperature",
            severity="warning",
            onset_s=first.onset_s,
            detected_s=first.detected_s,
            last_seen_s=float(margin.time_s[-1]),
            explanation=f"Temperature margin to the {float(threshold_c[-1]):g} °C slowdown threshold {first.finding}: "
            f"check cooling, airflow and the thermal interface before the device throttles.",
            evidence=evidence,
        )
    ]


@dataclass(frozen=True)
class _MarginRule:
    onset_s: float
    detected_s: float
    # The sentence's middle: what the margin did, with the numbers.
    finding: str
    evidence: dict[str, float | int | str]


def _low_margin(
    margin: Series,
    intervals: _Intervals,
    interval_margin_c: npt.NDArray[np.float64],
    telemetry: DeviceTelemetry,
    limits: ThermalLimits,
) -> _MarginRule | None:
    """The margin's lower quartile over the trailing margin window first below the limit."""
    width = max(1, round(limits.margin_window_s / limits.evaluation_interval_s))
    hot = intervals.has_samples & (interval_margin_c < limits.min_temperature_margin_c)
    hot_in_window = _trailing_sums(hot.astype(np.float64), width)
    over = intervals.has_samples & (hot_in_window >= max(1, math.ceil(MIN_HOT_SHARE_OF_WINDOW * width)))
    if not over.any():
        return None
    first = int(np.argmax(over))
    detected_s = float(intervals.last_sample_s[first])
    window = slice(max(first - width + 1, 0), first + 1)
    in_window = intervals.has_samples[window]
    window_margin_c = float(np.quantile(interval_margin_c[window][in_window], MIN_HOT_SHARE_OF_WINDOW))
    window_start_s = telemetry.warmup_end_s + window.start * limits.evaluation_interval_s
    hot_samples = (margin.time_s >= window_start_s) & (margin.values < limits.min_temperature_margin_c)
    onset_s = float(margin.time_s[int(np.argmax(hot_samples))]) if hot_samples.any() else detected_s
    evidence: dict[str, float | int | str] = {
        "window_margin_c": window_margin_c,
        "hot_intervals_in_window": int(hot_in_window[first]),
        "margin_window_s": limits.margin_window_s,
    }
    trend_clause = ""
    recent_s = intervals.last_sample_s[intervals.has_samples]
    recent_c = interval_margin_c[intervals.has_samples]
    recent_window = (recent_s > detected_s - RECENT_TREND_S) & (recent_s <= detected_s)
    if int(np.sum(recent_window)) >= RECENT_TREND_BLOCKS:
        recent = Series(recent_s[recent_window], recent_c[recent_window]).block_means(RECENT_TREND_BLOCKS)
        slope_c_per_day = float(stats.theilslopes(recent.values, recent.time_s / SECONDS_PER_DAY).slope)
        p_value = float(stats.kendalltau(recent.time_s, recent.values).pvalue)
        evidence["recent_trend_c_per_day"] = slope_c_per_day
        evidence["recent_trend_p_value"] = p_value
        trend_clause = (
            f", trend {slope_c_per_day:+.1f} °C/day over the last {_duration(RECENT_TREND_S)} "
            f"(Theil–Sen, {format_p_value(p_value)})"
        )
    finding = (
        f"fell to {window_margin_c:.1f} °C (lower quartile of the {_duration(limits.margin_window_s)} before "
        f"{format_utc(detected_s)}; limit {limits.min_temperature_margin_c:g} °C){trend_clause}"
    )
    return _MarginRule(onset_s=onset_s, detected_s=detected_s, finding=finding, evidence=evidence)


def _falling_margin(
    intervals: _Intervals,
    interval_margin_c: npt.NDArray[np.float64],
    telemetry: DeviceTelemetry,
    limits: ThermalLimits,
) -> _MarginRule | None:
    """A significant Theil–Sen fall of the daily mean margin that reaches zero within the horizon."""
    # Whole days average the diurnal cycle away; a trend fitted across part of one would mistake it for drift.
    intervals_per_day = SECONDS_PER_DAY / limits.evaluation_interval_s
    complete_days = int((telemetry.end_s - telemetry.warmup_end_s) // SECONDS_PER_DAY)
    if complete_days < MIN_TREND_DAYS:
        return None
    day = (np.arange(intervals.count) * limits.evaluation_interval_s // SECONDS_PER_DAY).astype(np.int64)
    has = intervals.has_samples & (day < complete_days)
    covered = np.bincount(day[has], minlength=complete_days)
    sums = np.bincount(day[has], weights=interval_margin_c[has], minlength=complete_days)
    valid = covered >= MIN_DAY_COVERAGE * intervals_per_day
    with np.errstate(invalid="ignore", divide="ignore"):
        day_margin_c = sums / covered
    day_centre = np.arange(complete_days) + 0.5
    for last_day in range(MIN_TREND_DAYS - 1, complete_days):
        first_day = max(0, last_day - limits.trend_window_days + 1)
        keep = valid[first_day : last_day + 1]
        if int(np.sum(keep)) < MIN_TREND_DAYS:
            continue
        days = day_centre[first_day : last_day + 1][keep]
        margins_c = day_margin_c[first_day : last_day + 1][keep]
        screen_slope = float(np.polyfit(days, margins_c, 1)[0])
        if not (screen_slope < 0.0 and margins_c[-1] < -screen_slope * TREND_SCREEN_SLACK * limits.margin_horizon_days):
            continue
        p_value = float(stats.kendalltau(days, margins_c, alternative="less").pvalue)
        fit = stats.theilslopes(margins_c, days)
        slope_c_per_day = float(fit.slope)
        if not (p_value < limits.significance and slope_c_per_day < 0.0):
            continue
        day_end = last_day + 1.0
        margin_now_c = float(fit.intercept) + slope_c_per_day * day_end
        days_to_zero = max(margin_now_c, 0.0) / -slope_c_per_day
        if days_to_zero > limits.margin_horizon_days:
            continue
        detected_s = telemetry.warmup_end_s + day_end * SECONDS_PER_DAY
        evidence: dict[str, float | int | str] = {
            "trend_c_per_day": slope_c_per_day,
            "trend_p_value": p_value,
            "trend_days": len(days),
            "trend_margin_c": margin_now_c,
            "days_to_zero_margin": days_to_zero,
            "horizon_days": limits.margin_horizon_days,
        }
        finding = (
            f"falls {-slope_c_per_day:.1f} °C/day (Theil–Sen over {len(days)} daily means, {format_p_value(p_value)}) "
            f"to {margin_now_c:.1f} °C on {format_utc(detected_s)}, zero in about {days_to_zero:.1f} days "
            f"(horizon {limits.margin_horizon_days:g} days)"
        )
        onset_s = telemetry.warmup_end_s + first_day * SECONDS_PER_DAY
        return _MarginRule(onset_s=onset_s, detected_s=detected_s, finding=finding, evidence=evidence)
    return None


def _detect_sustained_tax(telemetry: DeviceTelemetry, limits: ThermalLimits) -> list[Detection]:
    detections = []
    for metric in telemetry.metrics_with_prefix("throughput."):
        workload = metric.removeprefix("throughput.")
        known_windows = telemetry.steady_windows.get(workload)
        windows = sorted(known_windows) if known_windows is not None else [(telemetry.warmup_end_s, telemetry.end_s)]
        throughput = telemetry.metric(metric).finite()
        if len(throughput) == 0:
            continue
        detection = _sustained_tax(telemetry, limits, workload, throughput, windows, known_windows is not None)
        if detection is not None:
            detections.append(detection)
    return detections


def _sustained_tax(
    telemetry: DeviceTelemetry,
    limits: ThermalLimits,
    workload: str,
    throughput: Series,
    windows: Sequence[tuple[float, float]],
    slotted: bool,
) -> Detection | None:
    """Throughput under sustained load relative to the burst at the start of each steady window."""
    starts_s = np.array([start_s for start_s, _ in windows], dtype=np.float64)
    ends_s = np.array([end_s for _, end_s in windows], dtype=np.float64)
    first = np.searchsorted(throughput.time_s, starts_s, side="left")
    middle = np.searchsorted(throughput.time_s, starts_s + limits.burst_window_s, side="left")
    last = np.searchsorted(throughput.time_s, ends_s, side="right")
    cumulative = np.concatenate(([0.0], np.cumsum(throughput.values)))
    with np.errstate(invalid="ignore", divide="ignore"):
        burst = (cumulative[middle] - cumulative[first]) / (middle - first)
    usable = (middle > first) & (last > middle) & (burst > 0.0)
    if not usable.any():
        return None
    first, middle, last, burst = first[usable], middle[usable], last[usable], burst[usable]
    # Every sustained sample, window after window, as a share of its own window's burst.
    lengths = last - middle
    sample = np.repeat(middle - np.cumsum(lengths) + lengths, lengths) + np.arange(int(np.sum(lengths)))
    ratios = throughput.values[sample] / np.repeat(burst, lengths)
    times_s = throughput.time_s[sample]
    if ratios.size < MIN_TAX_SAMPLES:
        return None
    # Pooled over every sustained sample so far: the estimate an on-line run holds at each sample's time.
    counted = np.arange(1, ratios.size + 1)
    running_tax = 1.0 - np.cumsum(ratios) / counted
    judged = counted >= MIN_TAX_SAMPLES
    tax = float(running_tax[-1])
    severity = "warning" if tax > limits.max_sustained_tax else "info"
    decided = judged & (running_tax > limits.max_sustained_tax) if severity == "warning" else judged
    detected_s = float(times_s[int(np.argmax(decided))])
    evidence: dict[str, float | int | str] = {
        "sustained_ratio": 1.0 - tax,
        "tax": tax,
        "limit_tax": limits.max_sustained_tax,
        "burst_window_s": limits.burst_window_s,
        "burst_level": float(np.mean(burst)),
        "steady_windows": int(burst.size),
        "sustained_samples": int(ratios.size),
    }
    where = (
        f"the first {_duration(limits.burst_window_s)} of {burst.size} steady windows"
        if slotted
        else f"the first {_duration(limits.burst_window_s)} after warm-up"
    )
    cost = "no tax"
    if tax > 0.0:
        limit_clause = f" (limit {_percent(limits.max_sustained_tax)})" if severity == "warning" else ""
        spans_start_s = throughput.time_s[middle]
        spans_end_s = throughput.time_s[last - 1]
        cost = f"{_percent(tax)} tax{limit_clause}{_dominant_reason(telemetry, spans_start_s, spans_end_s, evidence)}"
    explanation = f"Workload {workload} sustains {_percent(1.0 - tax)} of its burst throughput ({where}); {cost}."
    return Detection(
        device=telemetry.device,
        kind="sustained_tax",
        subject=workload,
        severity=severity,
        onset_s=float(times_s[0]),
        detected_s=detected_s,
        last_seen_s=float(times_s[-1]),
        explanation=explanation,
        evidence=evidence,
    )


def _dominant_reason(
    telemetry: DeviceTelemetry,
    spans_start_s: npt.NDArray[np.float64],
    spans_end_s: npt.NDArray[np.float64],
    evidence: dict[str, float | int | str],
) -> str:
    """Which throttle reason held during the sustained part of the windows, as a clause for the sentence."""
    reasons = telemetry.metric("device.clock_event_reasons").finite()
    if len(reasons) == 0:
        return ""
    entering = np.searchsorted(reasons.time_s, spans_start_s, side="left")
    leaving = np.searchsorted(reasons.time_s, spans_end_s, side="right")
    depth = np.zeros(len(reasons) + 1)
    np.add.at(depth, entering, 1.0)
    np.add.at(depth, leaving, -1.0)
    inside = np.cumsum(depth)[:-1] > 0.0
    masks = reasons.values.astype(np.int64)
    busy = inside & ((masks & GPU_IDLE) == 0)
    if not busy.any():
        return ""
    shares = {
        reason: float(np.mean(((masks[busy] & reason.bits) != 0) & ((masks[busy] & reason.explained_by) == 0)))
        for reason in THROTTLE_REASONS
    }
    reason, share = max(shares.items(), key=lambda item: item[1])
    if share < REPORTED_MIN_RESIDENCY:
        return " with no throttle reason reported"
    evidence["dominant_reason"] = reason.subject
    evidence["dominant_reason_residency"] = share
    extent = "mostly" if share >= DOMINANT_REASON_SHARE else "partly"
    return f", {extent} {reason.while_phrase} ({_percent(share)} of the sustained time)"

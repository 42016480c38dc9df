"""Software-stack changes: each driver, firmware or framework change is noted, and a regression after it named."""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from soak.analysis.series import Detection, Series, capitalised, format_p_value, format_utc
from soak.analysis.telemetry import DeviceTelemetry

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

THROUGHPUT_PREFIX = "throughput."
# What each worker reports when it starts: the versions of the software it runs the device with, as JSON.
SOFTWARE_STACK = "software_stack"
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
# A block holding less than this share of the samples it could hold (cut by a steady window's edge) is noise.
MIN_BLOCK_COVERAGE = 0.5
# An on-line run would judge after every sample; the comparison is judged at every block while the change is
# young and hourly after that, so weeks of data cost a few hundred tests rather than tens of thousands.
EVERY_BLOCK_FOR_S = 2 * SECONDS_PER_HOUR
LATER_EVERY_S = SECONDS_PER_HOUR
# Fewer driver errors after a change make no rate; a rise smaller than this factor is no regression however
# significant, since error rates wander with the workload mix.
MIN_ERRORS_AFTER = 3
MIN_ERROR_RATE_FACTOR = 2.0


class StackChangeLimits(BaseModel):
    """How much worse a device may do after a driver, firmware or framework change before it is a regression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_regression_fraction: float = Field(
        default=0.03,
        gt=0.0,
        lt=1.0,
        description="fall of a workload's median throughput after a change tolerated, as a fraction (0.03 = 3 %)",
    )
    min_blocks_each_side: int = Field(
        default=6,
        ge=3,
        le=10_000,
        description="block means needed before and after a change to compare them",
    )
    block_s: float = Field(
        default=300.0,
        ge=10.0,
        le=SECONDS_PER_DAY,
        description="length of the blocks whose throughput means are compared (they tame autocorrelated noise)",
    )
    significance: float = Field(
        default=0.001,
        gt=0.0,
        lt=0.5,
        description="one-sided p-value below which a fall in throughput or a rise in driver errors counts",
    )


@dataclass(frozen=True)
class _Change:
    """One component's version change, as a stack_change event reported it."""

    time_s: float
    component: str
    old: str
    new: str

    @property
    def text(self) -> str:
        return f"{self.component} {self.old} → {self.new}"


@dataclass(frozen=True)
class _Regression:
    """One measure that got worse after a change: when that was first clear, and how it reads."""

    detected_s: float
    phrase: str
    evidence: dict[str, float | int | str]


def detect_stack_changes(telemetry: DeviceTelemetry, limits: StackChangeLimits) -> list[Detection]:
    """A note per changed component, and a regression finding per change after which the device did worse."""
    changes = _changes(telemetry)
    by_component: dict[str, list[_Change]] = defaultdict(list)
    for change in changes:
        by_component[change.component].append(change)
    detections = [_note(telemetry, component, its_changes) for component, its_changes in by_component.items()]
    upgrades = _upgrades(changes, limits.block_s)
    for position, upgrade in enumerate(upgrades):
        before_start_s = upgrades[position - 1][-1].time_s if position else telemetry.warmup_end_s
        after_end_s = upgrades[position + 1][0].time_s if position + 1 < len(upgrades) else telemetry.end_s
        before = (max(before_start_s, telemetry.warmup_end_s), upgrade[0].time_s)
        after = (max(upgrade[-1].time_s, telemetry.warmup_end_s), after_end_s)
        regressions = [
            regression
            for name in telemetry.metrics_with_prefix(THROUGHPUT_PREFIX)
            if (regression := _throughput_regression(telemetry, name, before, after, limits)) is not None
        ]
        errors = _error_regression(telemetry, before, after, limits)
        if errors is not None:
            regressions.append(errors)
        if regressions:
            detections.append(_regression(telemetry, upgrade, regressions, before, after))
    return detections


def _changes(telemetry: DeviceTelemetry) -> list[_Change]:
    changes = _software_changes(telemetry)
    for event in telemetry.events:
        if event.kind != "stack_change" or event.time_s > telemetry.end_s:
            continue
        try:
            fields = json.loads(event.raw)
            change = _Change(event.time_s, str(fields["component"]), str(fields["old"]), str(fields["new"]))
        except (ValueError, TypeError, KeyError):
            logger.warning(
                "%s: stack_change event at %s without a JSON {component, old, new}: %r",
                telemetry.device,
                format_utc(event.time_s),
                event.raw[:200],
            )
            continue
        if change.old != change.new:
            changes.append(change)
    return sorted(changes, key=lambda change: change.time_s)


def _software_changes(telemetry: DeviceTelemetry) -> list[_Change]:
    """Changes between the software stacks (torch, its device extension) successive workers reported."""
    changes: list[_Change] = []
    previous: dict[str, str] = {}
    for event in telemetry.events:
        if event.kind != SOFTWARE_STACK or event.time_s > telemetry.end_s:
            continue
        try:
            stack = {str(component): str(version) for component, version in json.loads(event.raw).items()}
        except (ValueError, AttributeError):
            logger.warning("%s: software_stack event without a JSON object: %r", telemetry.device, event.raw[:200])
            continue
        changes += [
            _Change(event.time_s, component, previous[component], version)
            for component, version in stack.items()
            if component in previous and previous[component] != version
        ]
        previous.update(stack)
    return changes


def _upgrades(changes: Sequence[_Change], within_s: float) -> list[list[_Change]]:
    """Changes reported close together (a driver and its firmware at one reboot) are one upgrade."""
    upgrades: list[list[_Change]] = []
    for change in changes:
        if upgrades and change.time_s - upgrades[-1][-1].time_s <= within_s:
            upgrades[-1].append(change)
        else:
            upgrades.append([change])
    return upgrades


def _note(telemetry: DeviceTelemetry, component: str, changes: list[_Change]) -> Detection:
    steps = ", ".join(f"{change.old} → {change.new} at {format_utc(change.time_s)}" for change in changes)
    times = "" if len(changes) == 1 else f" {len(changes)} times"
    return Detection(
        device=telemetry.device,
        kind="stack_change",
        subject=component,
        severity="info",
        onset_s=changes[0].time_s,
        detected_s=changes[0].time_s,
        last_seen_s=changes[-1].time_s,
        explanation=(
            f"{capitalised(component)} changed{times} mid-campaign: {steps}; throughput and driver errors are "
            "compared before and after."
        ),
        evidence={
            "component": component,
            "changes": len(changes),
            "first_old": changes[0].old,
            "latest_new": changes[-1].new,
            "first_s": changes[0].time_s,
            "last_s": changes[-1].time_s,
        },
    )


def _blocks(
    series: Series, window: tuple[float, float], block_s: float, min_samples: int
) -> tuple[FloatArray, FloatArray]:
    """Means of the samples in each block of a window (end excluded), and the time of each block's last sample."""
    first, last = np.searchsorted(series.time_s, window, side="left")
    time_s, values = series.time_s[first:last], series.values[first:last]
    if not time_s.size:
        return np.empty(0), np.empty(0)
    block = ((time_s - window[0]) // block_s).astype(np.int64)
    starts = np.flatnonzero(np.diff(block, prepend=-1))
    ends = np.append(starts[1:], time_s.size)
    counts = ends - starts
    keep = counts >= min_samples
    return (np.add.reduceat(values, starts) / counts)[keep], time_s[ends - 1][keep]


def _checkpoints(blocks: int, first: int, block_s: float) -> list[int]:
    """How many after-change blocks each judgement uses: every count while the change is young, hourly later."""
    dense_until = first + math.ceil(EVERY_BLOCK_FOR_S / block_s)
    step = max(1, math.ceil(LATER_EVERY_S / block_s))
    counts = [count for count in range(first, blocks + 1) if count <= dense_until or (count - dense_until) % step == 0]
    return counts if counts and counts[-1] == blocks else [*counts, blocks]


def _throughput_regression(
    telemetry: DeviceTelemetry,
    name: str,
    before: tuple[float, float],
    after: tuple[float, float],
    limits: StackChangeLimits,
) -> _Regression | None:
    workload = name.removeprefix(THROUGHPUT_PREFIX)
    steady = telemetry.steady(workload, telemetry.metric(name)).finite()
    min_samples = max(1, math.ceil(MIN_BLOCK_COVERAGE * limits.block_s / telemetry.sample_interval_s))
    before_blocks, _ = _blocks(steady, before, limits.block_s, min_samples)
    after_blocks, after_last_s = _blocks(steady, after, limits.block_s, min_samples)
    needed = limits.min_blocks_each_side
    if before_blocks.size < needed or after_blocks.size < needed:
        return None
    baseline = float(np.median(before_blocks))
    if baseline <= 0.0:
        return None

    def judged(count: int) -> tuple[float, float] | None:
        # The cheap median screen comes first; the rank test runs only on a fall big enough to matter.
        fraction = float(np.median(after_blocks[:count])) / baseline - 1.0
        if fraction > -limits.max_regression_fraction:
            return None
        p_value = float(stats.mannwhitneyu(after_blocks[:count], before_blocks, alternative="less").pvalue)
        return (fraction, p_value) if p_value < limits.significance else None

    # The finding stands on all the data since the change; it was first clear at the earliest judgement that held.
    verdict = judged(after_blocks.size)
    if verdict is None:
        return None
    detected_s = next(
        float(after_last_s[count - 1])
        for count in _checkpoints(after_blocks.size, needed, limits.block_s)
        if judged(count) is not None
    )
    fraction, p_value = verdict
    return _Regression(
        detected_s=detected_s,
        phrase=f"throughput of {workload} fell {-100.0 * fraction:.1f} % ({format_p_value(p_value)})",
        evidence={
            f"{workload}_change_percent": 100.0 * fraction,
            f"{workload}_p_value": p_value,
            f"{workload}_median_before": baseline,
            f"{workload}_median_after": float(np.median(after_blocks)),
            f"{workload}_blocks_before": int(before_blocks.size),
            f"{workload}_blocks_after": int(after_blocks.size),
        },
    )


def _error_regression(
    telemetry: DeviceTelemetry, before: tuple[float, float], after: tuple[float, float], limits: StackChangeLimits
) -> _Regression | None:
    before_s = before[1] - before[0]
    if before_s < limits.min_blocks_each_side * limits.block_s:
        return None
    times_s = np.sort(
        [
            event.time_s
            for event in telemetry.events
            if event.kind == "driver_error" and event.severity in {"warning", "critical"}
        ]
    )
    count_before = int(np.count_nonzero((times_s >= before[0]) & (times_s < before[1])))
    after_times_s = times_s[(times_s >= after[0]) & (times_s <= after[1])]

    def judged(count_after: int, after_s: float) -> float | None:
        if count_after < MIN_ERRORS_AFTER or after_s <= 0.0:
            return None
        if count_after / after_s < MIN_ERROR_RATE_FACTOR * count_before / before_s:
            return None
        # Under an unchanged rate each error falls after the change with the after window's share of the time.
        share = after_s / (after_s + before_s)
        test = stats.binomtest(count_after, count_after + count_before, share, alternative="greater")
        return float(test.pvalue) if test.pvalue < limits.significance else None

    after_s = after[1] - after[0]
    p_value = judged(after_times_s.size, after_s)
    if p_value is None:
        return None
    detected_s = next(
        float(time_s)
        for count, time_s in enumerate(after_times_s, start=1)
        if judged(count, float(time_s) - after[0]) is not None
    )
    per_day_before = count_before / before_s * SECONDS_PER_DAY
    per_day_after = after_times_s.size / after_s * SECONDS_PER_DAY
    return _Regression(
        detected_s=detected_s,
        phrase=(
            f"driver errors rose from {per_day_before:.2g} to {per_day_after:.2g} per day ({format_p_value(p_value)})"
        ),
        evidence={
            "driver_errors_per_day_before": per_day_before,
            "driver_errors_per_day_after": per_day_after,
            "driver_errors_before": count_before,
            "driver_errors_after": int(after_times_s.size),
            "driver_errors_p_value": p_value,
        },
    )


def _regression(
    telemetry: DeviceTelemetry,
    upgrade: list[_Change],
    regressions: list[_Regression],
    before: tuple[float, float],
    after: tuple[float, float],
) -> Detection:
    changed = " and ".join(change.text for change in upgrade)
    phrases = [regression.phrase for regression in regressions]
    what = capitalised(", ".join(phrases[:-1]) + " and " + phrases[-1] if len(phrases) > 1 else phrases[0])
    evidence: dict[str, float | int | str] = {
        "change": changed,
        "change_s": upgrade[0].time_s,
        "before_start_s": before[0],
        "after_end_s": after[1],
        "before_hours": (before[1] - before[0]) / SECONDS_PER_HOUR,
        "after_hours": (after[1] - after[0]) / SECONDS_PER_HOUR,
    }
    for regression in regressions:
        evidence |= regression.evidence
    return Detection(
        device=telemetry.device,
        kind="stack_regression",
        subject=" + ".join(f"{change.component} {change.old}->{change.new}" for change in upgrade),
        severity="warning",
        onset_s=upgrade[0].time_s,
        detected_s=min(regression.detected_s for regression in regressions),
        last_seen_s=after[1],
        explanation=(
            f"{what} after {changed} on {format_utc(upgrade[0].time_s)} "
            f"({evidence['before_hours']:.1f} h before against {evidence['after_hours']:.1f} h after): roll the "
            "change back on this device or report the regression to its vendor."
        ),
        evidence=evidence,
    )

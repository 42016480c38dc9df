"""Memory and PCIe health detector: DCGM-like limits on ECC, row remapping, page retirement and the PCIe link.

The limits follow NVIDIA DCGM's health watches as summarised in shared/reference/accelerators.md ("DCGM
thresholds worth matching").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from soak.analysis.series import Detection, Series, format_utc
from soak.analysis.telemetry import DeviceTelemetry

FloatArray = npt.NDArray[np.float64]

ECC_UNCORRECTED_VOLATILE = "device.ecc_uncorrected_volatile_errors"
ECC_UNCORRECTED_AGGREGATE = "device.ecc_uncorrected_aggregate_errors"
ECC_CORRECTED_VOLATILE = "device.ecc_corrected_volatile_errors"
ECC_CORRECTED_AGGREGATE = "device.ecc_corrected_aggregate_errors"
REMAPPED_ROWS_UNCORRECTABLE = "device.remapped_rows_uncorrectable"
REMAPPED_ROWS_PENDING = "device.remapped_rows_pending"
REMAPPED_ROWS_FAILURE = "device.remapped_rows_failure"
RETIRED_PAGES_DOUBLE_BIT = "device.retired_pages_double_bit"
RETIRED_PAGES_SINGLE_BIT = "device.retired_pages_single_bit"
RETIRED_PAGES_PENDING = "device.retired_pages_pending"
PCIE_REPLAYS = "device.pcie_replays"
PCIE_LINK_GEN = "device.pcie_link_gen"
PCIE_LINK_GEN_MAX = "device.pcie_link_gen_max"
PCIE_LINK_WIDTH = "device.pcie_link_width"
PCIE_LINK_WIDTH_MAX = "device.pcie_link_width_max"
UTILIZATION = "device.utilization_ratio"
WORKER_BUSY = "worker.busy_ratio"

SECONDS_PER_DAY = 86400.0
SECONDS_PER_MINUTE = 60.0
# Raw signalling rate per lane by PCIe generation, in transfers per second (one bit per transfer and lane).
PCIE_TRANSFERS_PER_S = {1: 2.5e9, 2: 5e9, 3: 8e9, 4: 16e9, 5: 32e9, 6: 64e9}
# A link of unknown speed is judged as the common data-centre GPU link; a faster one only raises the limit.
DEFAULT_PCIE_LINK = (4, 16)
# A busy reading older than this many sample intervals says nothing about the link sample it is paired with.
BUSY_READING_MAX_AGE_INTERVALS = 2.0


class MemoryHealthLimits(BaseModel):
    """DCGM-like limits on device memory errors and on the PCIe link (shared/reference/accelerators.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uncorrectable_remapped_rows_limit: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="rows remapped for uncorrectable errors at which the device fails (DCGM: 512)",
    )
    retired_pages_limit: int = Field(
        default=63,
        ge=1,
        le=1_000_000,
        description="retired pages, single- plus double-bit, at which the device fails (DCGM: 63)",
    )
    max_corrected_ecc_errors_per_day: float = Field(
        default=100.0,
        ge=0.0,
        le=1e9,
        description="correctable (single-bit) ECC errors tolerated in any 24 hours",
    )
    pcie_max_bit_error_rate: float = Field(
        default=1e-12,
        gt=0.0,
        le=1e-6,
        description="PCIe bit-error rate whose replays per minute, at the link's speed and width, are tolerated",
    )
    pcie_busy_utilization_ratio: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="utilization at which the device counts as busy, so that a slower PCIe link is a fault",
    )
    pcie_min_degraded_samples: int = Field(
        default=6,
        ge=1,
        le=100_000,
        description="consecutive busy samples with the PCIe link below its maximum that make a finding",
    )


@dataclass(frozen=True)
class _Counts:
    """New errors seen at each reading of a counter (or at each event)."""

    time_s: FloatArray
    new: FloatArray
    source: str

    @property
    def total(self) -> float:
        return float(self.new.sum())


def detect_memory_health(telemetry: DeviceTelemetry, limits: MemoryHealthLimits) -> list[Detection]:
    """Findings on ECC errors, row remapping, page retirement, PCIe replays and a downshifted PCIe link."""
    found = [
        _uncorrectable_ecc(telemetry),
        _correctable_ecc_rate(telemetry, limits),
        _flag(
            telemetry,
            REMAPPED_ROWS_FAILURE,
            1.0,
            subject="row_remap_failure",
            severity="critical",
            what="row remapping failed: the memory has no spare row left for a failing one",
            action="take the device out of the campaign and open an RMA case",
        ),
        _flag(
            telemetry,
            REMAPPED_ROWS_PENDING,
            1.0,
            subject="row_remap_pending",
            severity="warning",
            what="a row remap is pending and takes effect only at the next GPU reset",
            action="reset the device at the next convenient moment",
        ),
        _flag(
            telemetry,
            REMAPPED_ROWS_UNCORRECTABLE,
            float(limits.uncorrectable_remapped_rows_limit),
            subject="remapped_rows_uncorrectable",
            severity="critical",
            what="rows remapped for uncorrectable errors reached the limit of "
            f"{limits.uncorrectable_remapped_rows_limit}",
            action="take the device out of the campaign and open an RMA case",
        ),
        _flag(
            telemetry,
            RETIRED_PAGES_PENDING,
            1.0,
            subject="retired_pages_pending",
            severity="warning",
            what="a page retirement is pending and takes effect only at the next GPU reset",
            action="reset the device at the next convenient moment",
        ),
        _new_double_bit_retirements(telemetry),
        _retired_pages_total(telemetry, limits),
        _pcie_replay_rate(telemetry, limits),
        _pcie_link_downshift(telemetry, limits),
    ]
    return [detection for detection in found if detection is not None]


def _detection(
    telemetry: DeviceTelemetry,
    *,
    kind: str = "memory_health",
    subject: str,
    severity: str,
    onset_s: float,
    detected_s: float,
    last_seen_s: float,
    explanation: str,
    evidence: dict[str, float | int | str],
) -> Detection:
    return Detection(
        device=telemetry.device,
        kind=kind,
        subject=subject,
        severity=severity,
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=last_seen_s,
        explanation=explanation,
        evidence=evidence,
    )


def _counter(series: Series, source: str, *, from_zero: bool, lifetime: bool = False) -> _Counts:
    """New counts at each reading of a cumulative counter.

    from_zero: the counter started at zero when the driver loaded, so its first reading is errors too.
    lifetime: the counter survives driver reloads, so a drop is a misreading and only a new maximum is news;
    otherwise a drop is a reset (a driver reload) and the reading after it is all new, never negative errors.
    """
    series = _finite(series)
    if not len(series):
        return _Counts(np.empty(0), np.empty(0), source)
    values = np.maximum.accumulate(series.values) if lifetime else series.values
    steps = np.diff(values)
    new = np.concatenate(([values[0] if from_zero else 0.0], np.where(steps >= 0.0, steps, values[1:])))
    return _Counts(series.time_s, np.maximum(new, 0.0), source)


def _events(telemetry: DeviceTelemetry, kind: str, severities: set[str], source: str) -> _Counts:
    times = sorted(
        event.time_s
        for event in telemetry.events
        if event.kind == kind and event.severity in severities and event.time_s <= telemetry.end_s
    )
    return _Counts(np.asarray(times, dtype=np.float64), np.ones(len(times)), source)


def _finite(series: Series) -> Series:
    """The series without its missing (NaN) readings; the same object when none is missing, saving a copy."""
    return series if np.isfinite(series.values).all() else series.finite()


def _reading(telemetry: DeviceTelemetry, name: str) -> Series:
    return _finite(telemetry.metric(name))


def _value_at(series: Series, time_s: FloatArray, max_age_s: float = np.inf) -> FloatArray:
    """The latest reading at or before each time, NaN where there is none young enough."""
    if not len(series):
        return np.full(time_s.shape, np.nan)
    if series.time_s.shape == time_s.shape and np.array_equal(series.time_s, time_s):
        return series.values
    index = np.searchsorted(series.time_s, time_s, side="right") - 1
    safe = np.maximum(index, 0)
    fresh = (index >= 0) & (time_s - series.time_s[safe] <= max_age_s)
    return np.where(fresh, series.values[safe], np.nan)


def _uncorrectable_ecc(telemetry: DeviceTelemetry) -> Detection | None:
    sources = {
        # The volatile counter starts at zero when the driver loads; DCGM fails a device on any volatile one.
        "volatile_counter": _counter(telemetry.metric(ECC_UNCORRECTED_VOLATILE), "volatile counter", from_zero=True),
        # The lifetime counter keeps errors from before the campaign: only its increase is news.
        "lifetime_counter": _counter(
            telemetry.metric(ECC_UNCORRECTED_AGGREGATE), "lifetime counter", from_zero=False, lifetime=True
        ),
        "events": _events(telemetry, "ecc_error", {"critical"}, "double-bit ECC events"),
    }
    seen = {key: counts.time_s[counts.new > 0] for key, counts in sources.items()}
    seen = {key: times for key, times in seen.items() if times.size}
    if not seen:
        return None
    onset_s = min(float(times[0]) for times in seen.values())
    last_seen_s = max(float(times[-1]) for times in seen.values())
    tally = ", ".join(f"{sources[key].source}: {sources[key].total:.0f}" for key in seen)
    evidence: dict[str, float | int | str] = {"first_s": onset_s, "last_s": last_seen_s}
    evidence |= {f"errors_{key}": sources[key].total for key in seen}
    return _detection(
        telemetry,
        subject="ecc_uncorrectable",
        severity="critical",
        onset_s=onset_s,
        detected_s=onset_s,
        last_seen_s=last_seen_s,
        explanation=(
            f"Uncorrectable (double-bit) ECC errors since {format_utc(onset_s)} ({tally}), last at "
            f"{format_utc(last_seen_s)}: take the device out of the campaign, reset it and check its remapped "
            "rows; open an RMA case if they recur."
        ),
        evidence=evidence,
    )


def _correctable_ecc_rate(telemetry: DeviceTelemetry, limits: MemoryHealthLimits) -> Detection | None:
    # One source only: the counters and the events record the same errors. Errors counted before the first
    # reading have no known time, so they make no rate.
    volatile = telemetry.metric(ECC_CORRECTED_VOLATILE)
    aggregate = telemetry.metric(ECC_CORRECTED_AGGREGATE)
    if len(_finite(volatile)):
        counts = _counter(volatile, "volatile counter", from_zero=False)
    elif len(_finite(aggregate)):
        counts = _counter(aggregate, "lifetime counter", from_zero=False, lifetime=True)
    else:
        counts = _events(telemetry, "ecc_error", {"info", "warning"}, "single-bit ECC events")
    if counts.total <= limits.max_corrected_ecc_errors_per_day:
        return None
    time_s, new = counts.time_s, counts.new
    cumulative = np.cumsum(new)
    # Errors in the trailing 24 h at each reading: those of every reading after the one a day earlier.
    day_start = np.searchsorted(time_s, time_s - SECONDS_PER_DAY, side="right")
    in_day = cumulative - cumulative[day_start] + new[day_start]
    over = np.flatnonzero(in_day > limits.max_corrected_ecc_errors_per_day)
    if over.size == 0:
        return None
    first = int(over[0])
    window = slice(int(day_start[first]), first + 1)
    onset_s = float(time_s[window][new[window] > 0][0])
    detected_s = float(time_s[first])
    last_seen_s = float(time_s[new > 0][-1])
    return _detection(
        telemetry,
        subject="ecc_correctable_rate",
        severity="warning",
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=last_seen_s,
        explanation=(
            f"Correctable (single-bit) ECC errors reached {in_day[first]:.0f} in 24 h on {format_utc(detected_s)} "
            f"(limit {limits.max_corrected_ecc_errors_per_day:g} per day; {counts.total:.0f} since "
            f"{format_utc(float(time_s[new > 0][0]))}, {counts.source}): the device memory may be wearing out; "
            "plan a memory diagnostic and watch for row remaps."
        ),
        evidence={
            "errors_in_24h": float(in_day[first]),
            "max_errors_in_24h": float(in_day.max()),
            "total": counts.total,
            "limit_per_day": limits.max_corrected_ecc_errors_per_day,
            "source": counts.source,
            "window_start_s": onset_s,
            "window_end_s": detected_s,
        },
    )


def _flag(
    telemetry: DeviceTelemetry,
    metric: str,
    threshold: float,
    *,
    subject: str,
    severity: str,
    what: str,
    action: str,
) -> Detection | None:
    """A finding from the first reading of a gauge at or above a threshold."""
    series = _reading(telemetry, metric)
    held = np.flatnonzero(series.values >= threshold)
    if held.size == 0:
        return None
    onset_s = float(series.time_s[held[0]])
    last_seen_s = float(series.time_s[held[-1]])
    latest = float(series.values[-1])
    still = "still" if latest >= threshold else "no longer"
    return _detection(
        telemetry,
        subject=subject,
        severity=severity,
        onset_s=onset_s,
        detected_s=onset_s,
        last_seen_s=last_seen_s,
        explanation=(
            f"Since {format_utc(onset_s)} {what} ({metric.removeprefix('device.')} = {series.values[held[0]]:g}, "
            f"{still} so at the latest reading): {action}."
        ),
        evidence={
            "metric": metric,
            "threshold": threshold,
            "first_value": float(series.values[held[0]]),
            "max_value": float(series.values.max()),
            "latest_value": latest,
            "readings_at_or_above": int(held.size),
            "first_s": onset_s,
            "last_s": last_seen_s,
        },
    )


def _new_double_bit_retirements(telemetry: DeviceTelemetry) -> Detection | None:
    # Pages retired before the campaign are the card's history; one retired during it is a new uncorrectable error.
    series = _reading(telemetry, RETIRED_PAGES_DOUBLE_BIT)
    if not len(series):
        return None
    before = float(series.values[0])
    rose = np.flatnonzero(series.values > before)
    if rose.size == 0:
        return None
    onset_s = float(series.time_s[rose[0]])
    latest = float(series.values[-1])
    return _detection(
        telemetry,
        subject="retired_pages_double_bit",
        severity="critical",
        onset_s=onset_s,
        detected_s=onset_s,
        last_seen_s=float(series.time_s[rose[-1]]),
        explanation=(
            f"Device memory pages retired for double-bit errors rose from {before:g} to {latest:g} since "
            f"{format_utc(onset_s)}: an uncorrectable error hit the memory; take the device out of the campaign, "
            "reset it and open an RMA case if it recurs."
        ),
        evidence={"pages_at_start": before, "pages_latest": latest, "first_s": onset_s},
    )


def _retired_pages_total(telemetry: DeviceTelemetry, limits: MemoryHealthLimits) -> Detection | None:
    double_bit = _reading(telemetry, RETIRED_PAGES_DOUBLE_BIT)
    single_bit = _reading(telemetry, RETIRED_PAGES_SINGLE_BIT)
    # DCGM compares the sum of both causes with its limit.
    if double_bit.values.max(initial=0.0) + single_bit.values.max(initial=0.0) < limits.retired_pages_limit:
        return None
    time_s = np.union1d(double_bit.time_s, single_bit.time_s)
    total = np.nan_to_num(_value_at(double_bit, time_s)) + np.nan_to_num(_value_at(single_bit, time_s))
    held = np.flatnonzero(total >= limits.retired_pages_limit)
    if held.size == 0:
        return None
    onset_s = float(time_s[held[0]])
    return _detection(
        telemetry,
        subject="retired_pages",
        severity="critical",
        onset_s=onset_s,
        detected_s=onset_s,
        last_seen_s=float(time_s[held[-1]]),
        explanation=(
            f"{total[held[0]]:.0f} device memory pages retired (single- plus double-bit) on {format_utc(onset_s)}, "
            f"at or above the limit of {limits.retired_pages_limit}: take the device out of the campaign and open "
            "an RMA case."
        ),
        evidence={
            "retired_pages": float(total[held[0]]),
            "retired_pages_latest": float(total[-1]),
            "limit": limits.retired_pages_limit,
            "first_s": onset_s,
        },
    )


def _link(telemetry: DeviceTelemetry) -> tuple[int, int]:
    """The link's rated generation and width: the maximum the device reports, else its current, else a default."""

    def median(names: tuple[str, str], default: int) -> int:
        for name in names:
            values = _reading(telemetry, name).values
            if values.size:
                return int(np.median(values))
        return default

    gen = median((PCIE_LINK_GEN_MAX, PCIE_LINK_GEN), DEFAULT_PCIE_LINK[0])
    width = median((PCIE_LINK_WIDTH_MAX, PCIE_LINK_WIDTH), DEFAULT_PCIE_LINK[1])
    return gen, width


def _pcie_replay_rate(telemetry: DeviceTelemetry, limits: MemoryHealthLimits) -> Detection | None:
    counts = _counter(telemetry.metric(PCIE_REPLAYS), "replay counter", from_zero=False)
    if counts.total == 0.0:
        return None
    gen, width = _link(telemetry)
    transfers_per_s = PCIE_TRANSFERS_PER_S.get(gen, PCIE_TRANSFERS_PER_S[DEFAULT_PCIE_LINK[0]])
    # DCGM's PCIe check: replays per minute above bit-error rate × bits per second on all lanes × 60 s
    # (Gen4 x1 at 1e-12: 0.96 per minute), judged once a full minute of data is in.
    limit_per_minute = limits.pcie_max_bit_error_rate * transfers_per_s * width * SECONDS_PER_MINUTE
    time_s, cumulative = counts.time_s, np.cumsum(counts.new)
    minute_before = np.searchsorted(time_s, time_s - SECONDS_PER_MINUTE, side="right") - 1
    judged = np.flatnonzero(minute_before >= 0)
    if judged.size == 0:
        return None
    start = minute_before[judged]
    per_minute = (cumulative[judged] - cumulative[start]) / (time_s[judged] - time_s[start]) * SECONDS_PER_MINUTE
    over = np.flatnonzero(per_minute > limit_per_minute)
    if over.size == 0:
        return None
    first = int(over[0])
    detected_s = float(time_s[judged[first]])
    onset_s = float(time_s[start[first]])
    last_seen_s = float(time_s[judged[over[-1]]])
    return _detection(
        telemetry,
        kind="pcie_health",
        subject="replay_rate",
        severity="warning",
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=last_seen_s,
        explanation=(
            f"PCIe replays reached {per_minute[first]:.1f} per minute on {format_utc(detected_s)}, above the "
            f"{limit_per_minute:.1f} per minute that a bit-error rate of {limits.pcie_max_bit_error_rate:g} allows "
            f"on a Gen{gen} x{width} link ({counts.total:.0f} replays in all, at most {per_minute.max():.1f} per "
            "minute): reseat the card or check the riser, slot and cabling."
        ),
        evidence={
            "replays_per_minute": float(per_minute[first]),
            "max_replays_per_minute": float(per_minute.max()),
            "limit_per_minute": limit_per_minute,
            "replays_total": counts.total,
            "link_gen": gen,
            "link_width": width,
            "readings_over_limit": int(over.size),
        },
    )


def _busy(telemetry: DeviceTelemetry, time_s: FloatArray, threshold: float) -> npt.NDArray[np.bool_]:
    """Whether the device was working at each time: idle links downshift to save power, which is no fault."""
    max_age_s = BUSY_READING_MAX_AGE_INTERVALS * telemetry.sample_interval_s
    utilization = _reading(telemetry, UTILIZATION)
    reading = utilization if len(utilization) else _reading(telemetry, WORKER_BUSY)
    level = _value_at(reading, time_s, max_age_s)
    return np.nan_to_num(level, nan=0.0) >= threshold


def _degraded_from_series(
    telemetry: DeviceTelemetry, limits: MemoryHealthLimits
) -> tuple[float, float, float, dict[str, float | int | str]] | None:
    """Onset, detection and last time of a busy link below its maximum, from the link gauges, and its figures."""
    gen, width = _reading(telemetry, PCIE_LINK_GEN), _reading(telemetry, PCIE_LINK_WIDTH)
    time_s = (gen if len(gen) else width).time_s
    if not time_s.size:
        return None
    gen_now, gen_max = _value_at(gen, time_s), _value_at(_reading(telemetry, PCIE_LINK_GEN_MAX), time_s)
    width_now = _value_at(width, time_s)
    width_max = _value_at(_reading(telemetry, PCIE_LINK_WIDTH_MAX), time_s)
    # A comparison with a missing reading is False, so an unknown maximum never makes a link degraded.
    degraded = (gen_now < gen_max) | (width_now < width_max)
    if np.count_nonzero(degraded) < limits.pcie_min_degraded_samples:
        return None
    # Idle samples are left out rather than breaking a run: a link that stays slow across a pause is one fault.
    busy = _busy(telemetry, time_s, limits.pcie_busy_utilization_ratio)
    judged_s, judged_degraded = time_s[busy], degraded[busy]
    edges = np.diff(np.concatenate(([0], judged_degraded.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_runs = (ends - starts) >= limits.pcie_min_degraded_samples
    if not long_runs.any():
        return None
    starts, ends = starts[long_runs], ends[long_runs]
    in_long_run = (
        np.cumsum(np.bincount(starts, minlength=judged_s.size + 1) - np.bincount(ends, minlength=judged_s.size + 1))[
            :-1
        ]
        > 0
    )
    figures: dict[str, float | int | str] = {
        "busy_samples": int(busy.sum()),
        "degraded_busy_samples": int(in_long_run.sum()),
    }
    for name, now, rated in (("gen", gen_now, gen_max), ("width", width_now, width_max)):
        seen = now[busy][in_long_run]
        if np.isfinite(seen).any() and np.isfinite(rated).any():
            figures[f"lowest_{name}"] = float(np.nanmin(seen))
            figures[f"{name}_max"] = float(np.nanmax(rated))
    detected = int(starts[0]) + limits.pcie_min_degraded_samples - 1
    return float(judged_s[starts[0]]), float(judged_s[detected]), float(judged_s[ends[-1] - 1]), figures


def _degraded_from_events(telemetry: DeviceTelemetry, persist_s: float) -> tuple[float, float, float, int] | None:
    """Onset, detection and last time of a pcie_link_degraded event not restored within persist_s, and how many."""
    changes = sorted(
        (event.time_s, event.kind)
        for event in telemetry.events
        if event.kind in {"pcie_link_degraded", "pcie_link_restored"} and event.time_s <= telemetry.end_s
    )
    lasting: list[tuple[float, float]] = []
    for position, (time_s, kind) in enumerate(changes):
        if kind != "pcie_link_degraded":
            continue
        restored_s = next((t for t, k in changes[position + 1 :] if k == "pcie_link_restored"), telemetry.end_s)
        if restored_s - time_s >= persist_s:
            lasting.append((time_s, restored_s))
    if not lasting:
        return None
    return lasting[0][0], lasting[0][0] + persist_s, lasting[-1][1], len(lasting)


def _pcie_link_downshift(telemetry: DeviceTelemetry, limits: MemoryHealthLimits) -> Detection | None:
    from_series = _degraded_from_series(telemetry, limits)
    persist_s = limits.pcie_min_degraded_samples * telemetry.sample_interval_s
    from_events = _degraded_from_events(telemetry, persist_s)
    if from_series is None and from_events is None:
        return None
    spans = [(span[0], span[1], span[2]) for span in (from_series, from_events) if span is not None]
    onset_s = min(span[0] for span in spans)
    detected_s = min(span[1] for span in spans)
    last_seen_s = max(span[2] for span in spans)
    evidence: dict[str, float | int | str] = {"first_s": onset_s, "last_s": last_seen_s}
    if from_series is not None:
        figures = from_series[3]
        evidence |= figures
        now = _link_text(figures.get("lowest_gen"), figures.get("lowest_width"))
        rated = _link_text(figures.get("gen_max"), figures.get("width_max"))
        link = (
            f"at {now} instead of {rated} in {figures['degraded_busy_samples']} of {figures['busy_samples']} busy "
            "samples"
        )
    else:
        link = "below its maximum generation or width while busy"
    if from_events is not None:
        evidence["degraded_events_lasting"] = from_events[3]
        link += f", {from_events[3]} lasting pcie_link_degraded event(s)"
    return _detection(
        telemetry,
        kind="pcie_health",
        subject="link",
        severity="warning",
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=last_seen_s,
        explanation=(
            f"The PCIe link ran {link} from {format_utc(onset_s)} (judged only while the device was busy, at least "
            f"{limits.pcie_min_degraded_samples} samples in a row): reseat the card or check the riser and slot."
        ),
        evidence=evidence,
    )


def _link_text(gen: float | int | str | None, width: float | int | str | None) -> str:
    """E.g. "Gen5 x16", or as much of it as is known."""
    parts = ([f"Gen{float(gen):.0f}"] if gen is not None else []) + (
        [f"x{float(width):.0f}"] if width is not None else []
    )
    return " ".join(parts)

"""Memory-leak detector: sustained, significant and practically large growth of memory, open files or threads."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from statsmodels.tsa.stattools import acf

from soak.analysis.series import Detection, Series, capitalised, format_p_value, format_utc
from soak.analysis.telemetry import DeviceTelemetry

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

DEVICE_USED = "device.memory_used_bytes"
ALLOCATED = "worker.memory_allocated_bytes"
RESERVED = "worker.memory_reserved_bytes"
RSS = "process.rss_bytes"
OPEN_FILES = "process.open_files"
THREADS = "process.threads"
HOST_TOTAL = "host.memory_total_bytes"

BYTES_PER_MIB = 2.0**20
SECONDS_PER_HOUR = 3600.0

# Five-minute means turn seconds of autocorrelated readings into nearly independent points that cost little to
# test; the trailing windows are judged at every block's end. A campaign shorter than a day gets proportionally
# shorter blocks (DeviceTelemetry.block_s), so that a demo of minutes is judged on as many blocks as a day.
BLOCK_S = 300.0
# Trailing windows, in blocks of steady data (1, 2, 8 and 24 hours at full scale): the short ones catch a fast
# leak within the hour, the long ones a slow leak whose growth a short window cannot tell from noise.
WINDOW_BLOCKS = (12, 24, 96, 288)
# A window's growth must end this many residual standard deviations above the highest block mean of up to a day
# before it, after at least two hours of history: a sawtooth's teeth up to that long are then seen whole.
HIGH_WATER_BLOCKS = 288
HIGH_WATER_MARGIN_SD = 2.0
MIN_HISTORY_BLOCKS = 24
# The floor of a sawtooth is the lowest sample of this many blocks (30 min at full scale): longer than the
# period of the garbage collections it looks past. Those come seconds to minutes apart in real time however
# short a demo's blocks are, so the floor never looks back less than FLOOR_MIN_S.
FLOOR_BLOCKS = 6
FLOOR_MIN_S = 120.0
# Consecutive blocks of one run are one block apart; further apart, a run of the workload ended between them.
RUN_GAP_BLOCKS = 1.5
# The level a window ends at is the median of its last blocks: a fitted line's end overshoots a tooth's top.
RECENT_BLOCKS = 3
# A leak grows bit by bit; a few steps (the caching allocator taking more segments and keeping them) do not. No
# rise from one block to the next may make up more than this share of all the rises within a window.
MAX_STEP_SHARE = 0.25
# The least-squares slope screens every window cheaply; a Theil-Sen slope over a window in which a leak starts
# part-way can exceed it, so the screen lets through windows down to this share of the limit.
PREFILTER_RATE_SHARE = 0.5
# Nor does it pass windows whose naive least-squares t-statistic is below this: far under the z-score that the
# rank test needs at any usable significance, so it skips only windows that would fail.
PREFILTER_T_STATISTIC = 2.0
# Hamed and Rao keep only the autocorrelations of the detrended ranks that are significant at this level.
ACF_SIGNIFICANCE = 0.05
# The growth since onset is refit on at most this many blocks, so weeks of history cost no more than a day.
MAX_FIT_BLOCKS = 288
CRITICAL_RATE_FACTOR = 10.0
CRITICAL_DAYS_TO_EXHAUST = 7.0


class LeakLimits(BaseModel):
    """How fast memory, open files or threads may grow after warm-up before the growth is called a leak."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_device_rate_percent_per_hour: float = Field(
        default=0.15, gt=0.0, le=100.0, description="allowed growth of device memory, in % of its capacity per hour"
    )
    max_host_rate_mib_per_hour: float = Field(
        default=20.0,
        gt=0.0,
        le=1e6,
        description="allowed growth of the worker's resident memory, and of device memory of unknown capacity",
    )
    min_growth_mib: float = Field(
        default=32.0, ge=0.0, le=1e6, description="less total growth of a memory series is never a leak"
    )
    max_open_files_per_hour: float = Field(
        default=10.0, gt=0.0, le=1e6, description="allowed growth of the worker's open files per hour"
    )
    max_threads_per_hour: float = Field(
        default=4.0, gt=0.0, le=1e6, description="allowed growth of the worker's threads per hour"
    )
    min_growth_count: float = Field(
        default=16.0, ge=0.0, le=1e6, description="less total growth of open files or threads is never a leak"
    )
    significance: float = Field(
        default=0.001,
        gt=0.0,
        lt=0.5,
        description="one-sided p-value below which growth counts, after allowing for autocorrelation",
    )


@dataclass(frozen=True)
class _Rule:
    """What one metric may do, in its own unit (bytes or a count) per hour."""

    metric: str
    noun: str
    is_bytes: bool
    max_rate_per_hour: float
    min_growth: float
    capacity: float | None
    # Judge the floor the series keeps returning to (after each garbage collection) rather than its mean.
    floor: bool = False


@dataclass(frozen=True)
class _Blocks:
    """Block means of one series on a fixed time grid, with the time each block was complete."""

    time_s: FloatArray
    values: FloatArray
    complete_s: FloatArray
    block_s: float

    def __len__(self) -> int:
        return int(self.time_s.size)

    def runs(self) -> npt.NDArray[np.int64]:
        """Each block's run of the workload, counted from 0: a missing block is a gap between two runs."""
        gaps = np.diff(self.complete_s) > RUN_GAP_BLOCKS * self.block_s
        return np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)

    def span(self, first: int, last: int) -> _Blocks:
        """Blocks first to last, both included."""
        end = last + 1
        return _Blocks(self.time_s[first:end], self.values[first:end], self.complete_s[first:end], self.block_s)


@dataclass(frozen=True)
class _Fit:
    """Theil-Sen slope with its interval and the autocorrelation-corrected Mann-Kendall p-value."""

    rate_per_hour: float
    ci_low_per_hour: float
    ci_high_per_hour: float
    confidence: float
    p_value: float
    level_now: float
    residual_sd: float


@dataclass(frozen=True)
class _Trend:
    """A growth that met the rule: when it first did, where it began, and its size since then."""

    workload: str | None
    onset_s: float
    detected_s: float
    last_seen_s: float
    window_start_s: float
    window_hours: float
    block_s: float
    fit: _Fit
    growth: float
    n_blocks: int


def detect_leaks(telemetry: DeviceTelemetry, limits: LeakLimits) -> list[Detection]:
    """Find leaks of device memory, worker memory, open files and threads, judged on trailing windows."""
    capacity_bytes = telemetry.memory_total_bytes
    if capacity_bytes is not None:
        device_rate_bytes_per_hour = limits.max_device_rate_percent_per_hour / 100.0 * capacity_bytes
    else:
        logger.debug("%s: memory capacity unknown, device memory judged in MiB/h", telemetry.device)
        device_rate_bytes_per_hour = limits.max_host_rate_mib_per_hour * BYTES_PER_MIB
    host_total = telemetry.metric(HOST_TOTAL).finite()
    host_capacity_bytes = float(host_total.values[-1]) if len(host_total) else None
    host_rate_bytes_per_hour = limits.max_host_rate_mib_per_hour * BYTES_PER_MIB
    min_growth_bytes = limits.min_growth_mib * BYTES_PER_MIB
    rules = [
        _Rule(DEVICE_USED, "device memory used", True, device_rate_bytes_per_hour, min_growth_bytes, capacity_bytes),
        _Rule(ALLOCATED, "device memory allocated", True, device_rate_bytes_per_hour, min_growth_bytes, capacity_bytes),
        _Rule(RESERVED, "device memory reserved", True, device_rate_bytes_per_hour, min_growth_bytes, capacity_bytes),
        _Rule(
            RSS,
            "worker resident memory",
            True,
            host_rate_bytes_per_hour,
            min_growth_bytes,
            host_capacity_bytes,
            floor=True,
        ),
        _Rule(
            OPEN_FILES,
            "worker open files",
            False,
            limits.max_open_files_per_hour,
            limits.min_growth_count,
            None,
        ),
        _Rule(
            THREADS,
            "worker threads",
            False,
            limits.max_threads_per_hour,
            limits.min_growth_count,
            None,
        ),
    ]
    by_metric = {rule.metric: rule for rule in rules}
    found = {rule.metric: _strongest_trend(telemetry, rule, limits.significance) for rule in rules}

    detections: list[Detection] = []
    allocated, reserved, used = found[ALLOCATED], found[RESERVED], found[DEVICE_USED]
    if allocated is not None:
        follows = [name for name, trend in (("reserved", reserved), ("used", used)) if trend is not None]
        detections.append(_leak(telemetry.device, by_metric[ALLOCATED], allocated, follows))
    elif reserved is not None:
        detections.append(_allocator_growth(telemetry.device, by_metric[RESERVED], reserved))
    # Without allocator figures device memory used stands for allocated; beside them its growth is memory the
    # allocator does not hold (a context, a library's buffers), unless the allocator's own growth explains it.
    has_allocator_figures = len(telemetry.metric(ALLOCATED)) > 0
    if used is not None and (not has_allocator_figures or (allocated is None and reserved is None)):
        detections.append(_leak(telemetry.device, by_metric[DEVICE_USED], used, []))
    for metric in (RSS, OPEN_FILES, THREADS):
        trend = found[metric]
        if trend is not None:
            detections.append(_leak(telemetry.device, by_metric[metric], trend, []))
    return detections


def _strongest_trend(telemetry: DeviceTelemetry, rule: _Rule, significance: float) -> _Trend | None:
    """The metric's growth over the whole run, or per workload when a mix rotates (memory differs per workload)."""
    reported = telemetry.metric(rule.metric)
    # One pass for warm-up and missing readings: weeks of samples are not copied twice.
    keep = (reported.time_s >= telemetry.warmup_end_s) & np.isfinite(reported.values)
    series = Series(reported.time_s[keep], reported.values[keep])
    if not telemetry.steady_windows:
        return _first_trend(series, None, rule, significance, telemetry=telemetry)
    trends = [
        trend
        for workload in sorted(telemetry.steady_windows)
        if (
            trend := _first_trend(
                telemetry.steady(workload, series),
                workload,
                rule,
                significance,
                telemetry=telemetry,
            )
        )
        is not None
    ]
    if not trends:
        return None
    strongest = max(trends, key=lambda trend: trend.fit.rate_per_hour)
    # The finding dates from the first workload in which the rule held; its figures are the strongest one's.
    return replace(
        strongest,
        onset_s=min(trend.onset_s for trend in trends),
        detected_s=min(trend.detected_s for trend in trends),
        last_seen_s=max(trend.last_seen_s for trend in trends),
    )


def _first_trend(
    series: Series, workload: str | None, rule: _Rule, significance: float, *, telemetry: DeviceTelemetry
) -> _Trend | None:
    """The first trailing window, in time, whose growth is fast, large, new and significant; None when none is."""
    block_s = telemetry.block_s(BLOCK_S)
    grid = _Grid.of(series, origin_s=telemetry.warmup_end_s, end_s=telemetry.end_s, block_s=block_s)
    means = grid.means()
    # A fast leak shows in the means within the hour; a slow one under a sawtooth shows first in its floor, which
    # rises in steps (one per collection), so the floor is not held to the allocator-step rule. It is judged within
    # one run of the workload only: a worker that prepares the workload again settles on a new floor, which may
    # sit higher without anything leaking.
    views = [(means, MAX_STEP_SHARE, False)]
    if rule.floor:
        views.append((grid.trailing_floor(means), 1.0, True))
    trends = [
        trend
        for blocks, max_step_share, within_one_run in views
        if (trend := _first_in(blocks, series, workload, rule, significance, max_step_share, within_one_run))
        is not None
    ]
    return min(trends, key=lambda trend: trend.detected_s) if trends else None


def _first_in(
    blocks: _Blocks,
    series: Series,
    workload: str | None,
    rule: _Rule,
    significance: float,
    max_step_share: float,
    within_one_run: bool,
) -> _Trend | None:
    """The first window of these blocks that meets the rule, measured since its onset; None when none does."""
    # A run of the workload is a stretch of consecutive blocks; a missing block is a gap between two runs.
    gaps_before = blocks.runs()
    for end, n in _candidate_windows(
        blocks, max_rate_per_hour=rule.max_rate_per_hour, min_growth=rule.min_growth, max_step_share=max_step_share
    ):
        first = end - n + 1
        if within_one_run and gaps_before[end] != gaps_before[first]:
            continue
        window = blocks.span(first, end)
        fit = _fit(window, significance)
        window_growth = fit.rate_per_hour * float(window.time_s[-1] - window.time_s[0]) / SECONDS_PER_HOUR
        high_water = float(np.max(blocks.values[max(0, first - HIGH_WATER_BLOCKS) : first]))
        if (
            fit.rate_per_hour > rule.max_rate_per_hour
            and window_growth >= rule.min_growth
            and float(np.median(window.values[-RECENT_BLOCKS:])) > high_water + HIGH_WATER_MARGIN_SD * fit.residual_sd
            and fit.p_value < significance
        ):
            return _trend_since_onset(
                blocks, end, n, workload, rule, significance, last_seen_s=float(series.time_s[-1])
            )
    return None


@dataclass(frozen=True)
class _Grid:
    """The samples of the blocks of a grid fixed at origin_s that were complete by end_s, grouped by block.

    A fixed grid and complete blocks make every window's verdict depend only on data up to the window's end: the
    same verdict an on-line run would have reached then, whatever came later.
    """

    block_index: npt.NDArray[np.int64]
    time_s: FloatArray
    values: FloatArray
    starts: npt.NDArray[np.intp]
    origin_s: float
    block_s: float

    @classmethod
    def of(cls, series: Series, *, origin_s: float, end_s: float, block_s: float) -> _Grid:
        block_index = np.floor((series.time_s - origin_s) / block_s).astype(np.int64)
        complete = origin_s + (block_index + 1) * block_s <= end_s
        block_index = block_index[complete]
        starts = (
            np.flatnonzero(np.diff(block_index, prepend=block_index[0] - 1))
            if block_index.size
            else np.empty(0, dtype=np.intp)
        )
        return cls(block_index, series.time_s[complete], series.values[complete], starts, origin_s, block_s)

    def means(self) -> _Blocks:
        """Each block's mean time and value, and when it was complete."""
        if not self.starts.size:
            return _Blocks(np.empty(0), np.empty(0), np.empty(0), self.block_s)
        sizes = np.diff(np.append(self.starts, self.block_index.size))
        return _Blocks(
            np.add.reduceat(self.time_s, self.starts) / sizes,
            np.add.reduceat(self.values, self.starts) / sizes,
            (self.origin_s + (self.block_index[self.starts] + 1) * self.block_s).astype(np.float64),
            self.block_s,
        )

    def trailing_floor(self, means: _Blocks) -> _Blocks:
        """The means' blocks, each valued at the lowest sample of the FLOOR_BLOCKS blocks ending with it.

        A garbage-collected sawtooth of host memory swings by hundreds of MiB within minutes, hiding a leak of
        tens of MiB per hour in the block means; the level it falls back to after each collection is flat unless
        memory leaks, and a leak lifts it at the leak's own rate. Trailing, so a block's value needs no later data.
        """
        if not self.starts.size:
            return means
        lowest = np.minimum.reduceat(self.values, self.starts)
        runs = means.runs()
        # A block's floor looks back within its own run only: the last minutes of the run before may sit lower
        # (the worker had not yet built this workload's model again), which would read as growth in this one.
        span = max(FLOOR_BLOCKS, math.ceil(FLOOR_MIN_S / self.block_s))
        padded_lowest = np.concatenate([np.full(span - 1, np.inf), lowest])
        padded_runs = np.concatenate([np.full(span - 1, -1), runs])
        same_run = sliding_window_view(padded_runs, span) == runs[:, np.newaxis]
        floor = np.min(np.where(same_run, sliding_window_view(padded_lowest, span), np.inf), axis=1)
        return _Blocks(means.time_s, floor, means.complete_s, means.block_s)


def _candidate_windows(
    blocks: _Blocks, *, max_rate_per_hour: float, min_growth: float, max_step_share: float
) -> list[tuple[int, int]]:
    """(last block, blocks) of the windows that could meet the rule, earliest end first; cheap, all at once."""
    if len(blocks) <= MIN_HISTORY_BLOCKS:
        return []
    # Centred on the first block, so the running sums stay clear of float64 cancellation on epoch seconds and
    # bytes; each window's least-squares fit then comes from five running sums without touching its points.
    time_h = (blocks.time_s - blocks.time_s[0]) / SECONDS_PER_HOUR
    values = blocks.values - blocks.values[0]
    terms = (time_h, values, time_h * time_h, time_h * values, values * values)
    sums = [np.concatenate([[0.0], np.cumsum(term)]) for term in terms]
    # A sawtooth that garbage collection brings back climbs as steeply as a leak within one of its teeth, but
    # never above the peaks it reached before; a leak does. So a window is judged only with history before it,
    # and the level it ends at must exceed everything in that history.
    recent_level = np.median(sliding_window_view(values, RECENT_BLOCKS), axis=1)
    rises = np.maximum(np.diff(values), 0.0)
    rise_sums = np.concatenate([[0.0], np.cumsum(rises)])
    padded = np.concatenate([np.full(HIGH_WATER_BLOCKS - 1, -np.inf), values])
    # [k]: the highest of the day's blocks up to and including block k.
    high_water = np.max(sliding_window_view(padded, HIGH_WATER_BLOCKS), axis=1)
    candidates: list[tuple[int, int]] = []
    for n in WINDOW_BLOCKS:
        if len(blocks) <= max(n, MIN_HISTORY_BLOCKS) + n - 1:
            continue
        sum_t, sum_v, sum_tt, sum_tv, sum_vv = (total[n:] - total[:-n] for total in sums)
        spread_t = sum_tt - sum_t * sum_t / n
        slope_per_h = (sum_tv - sum_t * sum_v / n) / spread_t
        residual = np.maximum(sum_vv - sum_v * sum_v / n - slope_per_h * slope_per_h * spread_t, 0.0)
        span_h = time_h[n - 1 :] - time_h[: len(time_h) - n + 1]
        first = np.arange(slope_per_h.size)
        largest_rise = np.max(sliding_window_view(rises, n - 1), axis=1)
        all_rises = rise_sums[n - 1 :] - rise_sums[: rise_sums.size - n + 1]
        passing = (
            (first >= max(n, MIN_HISTORY_BLOCKS))
            & (slope_per_h > PREFILTER_RATE_SHARE * max_rate_per_hour)
            & (slope_per_h * span_h >= PREFILTER_RATE_SHARE * min_growth)
            # t > PREFILTER_T_STATISTIC, squared so that a window without residual needs no division.
            & (slope_per_h * slope_per_h * spread_t * (n - 2) > PREFILTER_T_STATISTIC**2 * residual)
            & (recent_level[first + n - RECENT_BLOCKS] > high_water[np.maximum(first - 1, 0)])
            & (largest_rise <= max_step_share * all_rises)
        )
        candidates.extend((int(start) + n - 1, n) for start in np.flatnonzero(passing))
    return sorted(candidates)


def _fit(blocks: _Blocks, significance: float) -> _Fit:
    """Theil-Sen rate with a (1 - significance) interval, and a Mann-Kendall p-value that survives autocorrelation."""
    time_h = (blocks.time_s - blocks.time_s[0]) / SECONDS_PER_HOUR
    theil_sen = stats.theilslopes(blocks.values, time_h, alpha=1.0 - significance)
    slope_per_h = float(theil_sen.slope)
    fitted = float(theil_sen.intercept) + slope_per_h * time_h
    return _Fit(
        rate_per_hour=slope_per_h,
        ci_low_per_hour=float(theil_sen.low_slope),
        ci_high_per_hour=float(theil_sen.high_slope),
        confidence=1.0 - significance,
        p_value=_mann_kendall_p(time_h, blocks.values, slope_per_h),
        level_now=float(fitted[-1]),
        residual_sd=float(stats.median_abs_deviation(blocks.values - fitted, scale="normal")),
    )


def _mann_kendall_p(time_h: FloatArray, values: FloatArray, slope_per_h: float) -> float:
    """One-sided Mann-Kendall p-value for growth, its variance widened for autocorrelation (Hamed and Rao 1998)."""
    kendall = stats.kendalltau(time_h, values, alternative="greater", method="asymptotic")
    if not math.isfinite(kendall.pvalue):
        return 1.0  # a constant window: no ranks, no trend
    n = values.size
    detrended_ranks = stats.rankdata(values - slope_per_h * time_h)
    autocorrelation = acf(detrended_ranks, nlags=n - 1, fft=True)[1:]
    bound = stats.norm.isf(ACF_SIGNIFICANCE / 2.0) / math.sqrt(n)
    lag = np.arange(1, n)
    weights = (n - lag) * (n - lag - 1) * (n - lag - 2)
    significant = np.abs(autocorrelation) > bound
    variance_factor = 1.0 + 2.0 / (n * (n - 1) * (n - 2)) * float(
        np.sum(weights[significant] * autocorrelation[significant])
    )
    # Negative autocorrelation would shrink the variance; a detector that must stay quiet does not take that gift.
    z_score = stats.norm.isf(kendall.pvalue) / math.sqrt(max(variance_factor, 1.0))
    return float(stats.norm.sf(z_score))


def _trend_since_onset(
    blocks: _Blocks,
    end: int,
    window_blocks: int,
    workload: str | None,
    rule: _Rule,
    significance: float,
    *,
    last_seen_s: float,
) -> _Trend:
    """Date the growth that the window ending at block `end` revealed, and measure it since its onset."""
    first = end - window_blocks + 1
    searched = max(0, first - window_blocks)
    onset = _hinge_onset(blocks.span(searched, end)) + searched
    # Measured up to now while it goes on; a growth that has stopped (a step, a worker that restarted) is
    # reported as it was when it met the rule.
    growth_blocks = blocks.span(onset, len(blocks) - 1)
    fit = _fit(_coarsened(growth_blocks, MAX_FIT_BLOCKS), significance)
    if not (fit.rate_per_hour > rule.max_rate_per_hour and fit.p_value < significance):
        growth_blocks = blocks.span(onset, end)
        fit = _fit(_coarsened(growth_blocks, MAX_FIT_BLOCKS), significance)
    growth_hours = float(growth_blocks.time_s[-1] - growth_blocks.time_s[0]) / SECONDS_PER_HOUR
    return _Trend(
        workload=workload,
        onset_s=float(blocks.time_s[onset]),
        detected_s=float(blocks.complete_s[end]),
        last_seen_s=last_seen_s,
        window_start_s=float(blocks.time_s[first]),
        window_hours=window_blocks * blocks.block_s / SECONDS_PER_HOUR,
        block_s=blocks.block_s,
        fit=fit,
        growth=fit.rate_per_hour * growth_hours,
        n_blocks=len(growth_blocks),
    )


def _hinge_onset(blocks: _Blocks) -> int:
    """Index of the knee of the best flat-then-linear least-squares fit: where the series left its level."""
    # Every knee at once: the fit of y on [1, max(t - knee, 0)] has a closed form per column.
    time_h = (blocks.time_s - blocks.time_s[0]) / SECONDS_PER_HOUR
    values = blocks.values - blocks.values.mean()
    ramp = np.maximum(time_h[None, :] - time_h[:-2, None], 0.0)
    ramp_centred = ramp - ramp.mean(axis=1, keepdims=True)
    spread = np.sum(ramp_centred * ramp_centred, axis=1)
    covariance = ramp_centred @ values
    explained = np.where(covariance > 0.0, covariance * covariance / np.maximum(spread, np.finfo(float).tiny), -1.0)
    return int(np.argmax(explained))


def _coarsened(blocks: _Blocks, max_blocks: int) -> _Blocks:
    """Merge consecutive blocks so that at most max_blocks remain, each the mean of equally many."""
    if len(blocks) <= max_blocks:
        return blocks
    starts = np.linspace(0, len(blocks), max_blocks + 1).astype(np.int64)[:-1]
    sizes = np.diff(np.append(starts, len(blocks)))
    return _Blocks(
        np.add.reduceat(blocks.time_s, starts) / sizes,
        np.add.reduceat(blocks.values, starts) / sizes,
        blocks.complete_s[starts + sizes - 1],
        blocks.block_s * len(blocks) / max_blocks,
    )


def _leak(device: str, rule: _Rule, trend: _Trend, follows: list[str]) -> Detection:
    fit = trend.fit
    evidence = _evidence(rule, trend)
    growth = (
        f"{capitalised(rule.noun)} {_verb(rule)} {_rate(rule, fit.rate_per_hour)} "
        f"({format_p_value(fit.p_value)}) since {format_utc(trend.onset_s)}"
    )
    days_to_exhaust: float | None = None
    if rule.capacity is not None and fit.rate_per_hour > 0.0:
        percent_per_day = 100.0 * fit.rate_per_hour * 24.0 / rule.capacity
        days_to_exhaust = max(rule.capacity - fit.level_now, 0.0) / (fit.rate_per_hour * 24.0)
        evidence |= {
            "capacity_bytes": rule.capacity,
            "percent_of_capacity_per_day": percent_per_day,
            "days_to_exhaust": days_to_exhaust,
        }
        percent = f"{percent_per_day:.0f}" if percent_per_day >= 10.0 else f"{percent_per_day:.2g}"
        growth += f", {percent} % of capacity per day, full in about {days_to_exhaust:.1f} days"
    clauses = [growth]
    if follows:
        clauses.append(f"{' and '.join(follows)} {'follows' if len(follows) == 1 else 'follow'}")
    if trend.workload is not None:
        clauses.append(f"workload {trend.workload}")
    clauses.append(f"limit {_rate(rule, rule.max_rate_per_hour)}")
    critical = fit.rate_per_hour > CRITICAL_RATE_FACTOR * rule.max_rate_per_hour or (
        days_to_exhaust is not None and days_to_exhaust < CRITICAL_DAYS_TO_EXHAUST
    )
    return Detection(
        device=device,
        kind="memory_leak",
        subject=rule.metric,
        severity="critical" if critical else "warning",
        onset_s=trend.onset_s,
        detected_s=trend.detected_s,
        last_seen_s=trend.last_seen_s,
        explanation="; ".join(clauses) + ".",
        evidence=evidence,
    )


def _allocator_growth(device: str, rule: _Rule, trend: _Trend) -> Detection:
    fit = trend.fit
    workload = f"; workload {trend.workload}" if trend.workload is not None else ""
    explanation = (
        f"{capitalised(rule.noun)} {_verb(rule)} {_rate(rule, fit.rate_per_hour)} ({format_p_value(fit.p_value)}) "
        f"since {format_utc(trend.onset_s)} while allocated memory stays flat: the caching allocator keeps freed "
        f"blocks, not a leak{workload}."
    )
    return Detection(
        device=device,
        kind="allocator_growth",
        subject=rule.metric,
        severity="info",
        onset_s=trend.onset_s,
        detected_s=trend.detected_s,
        last_seen_s=trend.last_seen_s,
        explanation=explanation,
        evidence=_evidence(rule, trend),
    )


def _evidence(rule: _Rule, trend: _Trend) -> dict[str, float | int | str]:
    fit = trend.fit
    # Memory figures in MiB, counts as they are; the key says which.
    scale, unit = (1.0 / BYTES_PER_MIB, "mib_") if rule.is_bytes else (1.0, "")
    evidence: dict[str, float | int | str] = {
        f"rate_{unit}per_hour": fit.rate_per_hour * scale,
        f"ci_low_{unit}per_hour": fit.ci_low_per_hour * scale,
        f"ci_high_{unit}per_hour": fit.ci_high_per_hour * scale,
        f"limit_{unit}per_hour": rule.max_rate_per_hour * scale,
        "growth_mib" if rule.is_bytes else "growth": trend.growth * scale,
        "confidence": fit.confidence,
        "p_value": fit.p_value,
        "onset_s": trend.onset_s,
        "window_start_s": trend.window_start_s,
        "window_end_s": trend.detected_s,
        "window_hours": trend.window_hours,
        "n_blocks": trend.n_blocks,
        "block_s": trend.block_s,
    }
    if rule.is_bytes:
        evidence["rate_bytes_per_hour"] = fit.rate_per_hour
    if trend.workload is not None:
        evidence["workload"] = trend.workload
    return evidence


def _verb(rule: _Rule) -> str:
    return "grows" if rule.is_bytes else "grow"


def _rate(rule: _Rule, rate_per_hour: float) -> str:
    if not rule.is_bytes:
        return f"{rate_per_hour:.3g} per hour"
    rate_mib_per_hour = rate_per_hour / BYTES_PER_MIB
    if abs(rate_mib_per_hour) >= 1024.0:
        return f"{rate_mib_per_hour / 1024.0:.1f} GiB/h"
    if abs(rate_mib_per_hour) >= 10.0:
        return f"{rate_mib_per_hour:.0f} MiB/h"
    return f"{rate_mib_per_hour:.1f} MiB/h"

"""Throughput-drift detector: a device's throughput falling below its own post-warm-up baseline.

Each throughput series is averaged into block means on a grid of fixed epoch multiples of `block_s`, so that
every device shares the grid (the peer comparison in peers.py aligns on it) and later data never moves a block.
The first `baseline_s` of steady blocks after warm-up set the device's own level; Page's one-sided lower CUSUM
then accumulates how far each later block falls below that level, less an allowance of half the drop it is
tuned for, and alarms when the sum reaches a threshold that Siegmund's approximation gives for the stated
in-control average run length (ARL). The threshold is in units of the blocks' long-run noise (robust scale
widened for lag-1 autocorrelation), re-estimated from all earlier blocks each time the history doubles.

A diurnal cycle of 1-2 % (cooling water, room temperature) would otherwise pass for drift: a baseline taken at
the daily crest sees the trough 2-4 % lower half a day later, as deep as the drops to catch. Once a day of
history exists, a 24 h harmonic fitted to all earlier blocks sets the expected level of each block, so only
departures from the device's own daily cycle accumulate. Before that a cycle cannot be told from a trend, so
the allowance widens by as far as a cycle of `max_diurnal_amplitude` could have moved the level since the
baseline: a drop in the first hours is still caught, one later on the first day only by the peer comparison.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from scipy import optimize, stats
from statsmodels.tsa.stattools import acf

from soak.analysis.series import Detection, capitalised, format_utc
from soak.analysis.telemetry import SECONDS_PER_DAY, DeviceTelemetry

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

THROUGHPUT_PREFIX = "throughput."
SECONDS_PER_HOUR = 3600.0

# A block holding less than this share of its samples (a workload slot that began or ended inside it) is left
# out: its mean would be noisier than the baseline's blocks and break the chart's calibration.
MIN_BLOCK_COVERAGE = 0.5
MIN_BASELINE_BLOCKS = 6
# Lag-1 autocorrelation of the blocks widens their noise by sqrt((1 + r) / (1 - r)), the long-run standard
# deviation of an AR(1); capped because a near-unit root is wander the allowance must absorb, not noise.
MAX_LAG1_AUTOCORRELATION = 0.8
# The block noise is never taken as smaller than this share of the drop to catch: a healthy device wanders
# across days by more than two hours of baseline show, and a near-constant series must not make every small
# wobble an alarm.
MIN_NOISE_SHARE_OF_DROP = 0.1
# The noise is taken at the upper bound of a one-sided confidence interval with this tail: a chi-square bound
# whose degrees of freedom are the effectively independent blocks times the MAD's efficiency (37 % of the
# standard deviation's on normal data).
NOISE_BOUND_TAIL = 0.05
MAD_EFFICIENCY = 0.37
# No block adds more than this share of the threshold to the CUSUM (a clip, as robust CUSUMs use): drift is
# sustained, so an alarm takes at least this many slow blocks, however slow one of them is. A pause of the host
# shows as one block at half speed, and short blocks (a campaign of minutes, charted on seconds) make such
# blocks common. Clipping only lowers the sum, so the in-control false-alarm rate can only fall.
MIN_ALARM_BLOCKS = 3
# Condition number (largest over smallest eigenvalue) of the harmonic fit's normal equations above which the
# cycle is not fitted: a history that covers the whole day gives 2, one that covers half of it about 25.
MAX_FIT_CONDITION = 50.0
# Siegmund's correction of the CUSUM threshold for the overshoot of a normal walk (Siegmund 1985).
SIEGMUND_OVERSHOOT = 1.166
# The level quoted and judged for severity is the median over this long a stretch ending at an alarm block.
SUSTAINED_S = 1800.0
CRITICAL_RATIO_MARGIN = 0.10


class DriftLimits(BaseModel):
    """How far and how long a device's throughput may sit below its own baseline, and below its peers'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_sustained_throughput_ratio: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="acceptance: a device sustaining less than this share of its baseline (or its peers) fails",
    )
    min_detectable_drop: float = Field(
        default=0.03,
        gt=0.0,
        le=0.5,
        description="the sustained drop, as a share of the baseline, the CUSUM is tuned to catch fastest",
    )
    in_control_arl_days: float = Field(
        default=10_000.0,
        ge=1.0,
        le=1e7,
        description=(
            "average days of steady running between false alarms on one healthy series "
            "(10 000 days is 0.07 per 100 device-weeks)"
        ),
    )
    block_s: float = Field(
        default=300.0, ge=10.0, le=3600.0, description="length of the block means the charts are run on, seconds"
    )
    baseline_s: float = Field(
        default=7200.0,
        le=7 * SECONDS_PER_DAY,
        description="steady running after warm-up that sets each series' own baseline level and noise, seconds",
    )
    max_diurnal_amplitude: float = Field(
        default=0.02,
        ge=0.0,
        le=0.2,
        description="largest daily cycle (half its peak-to-trough, share of the level) taken as normal, not drift",
    )
    peer_z_limit: float = Field(
        default=4.0,
        ge=1.0,
        le=100.0,
        description="robust z-score (median and MAD across identical devices) below which a block counts as slow",
    )
    min_peers: int = Field(
        default=4, ge=2, le=100_000, description="fewest other identical devices a block must be compared with"
    )
    peer_sustained_s: float = Field(
        default=3600.0,
        le=7 * SECONDS_PER_DAY,
        description="how long a device must stay slower than its peers, without a break, to be reported, seconds",
    )

    # Cross-field checks live on the later field, so each error names the field to fix.

    @field_validator("baseline_s")
    @classmethod
    def _baseline_holds_enough_blocks(cls, value: float, info: ValidationInfo) -> float:
        block_s = info.data.get("block_s")
        if block_s is not None and value < MIN_BASELINE_BLOCKS * block_s:
            raise ValueError(
                f"baseline_s must hold at least {MIN_BASELINE_BLOCKS} blocks of block_s = {block_s:g} s, "
                f"i.e. be at least {MIN_BASELINE_BLOCKS * block_s:g} s"
            )
        return value

    @field_validator("peer_sustained_s")
    @classmethod
    def _sustained_holds_a_block(cls, value: float, info: ValidationInfo) -> float:
        block_s = info.data.get("block_s")
        if block_s is not None and value < block_s:
            raise ValueError(f"peer_sustained_s must be at least one block (block_s = {block_s:g} s)")
        return value


@dataclass(frozen=True)
class BlockMeans:
    """The complete blocks of one steady throughput series on the shared grid, in time order."""

    # Block number on the grid: the block covers [index * block_s, (index + 1) * block_s).
    index: npt.NDArray[np.int64]
    mean: FloatArray
    first_sample_s: FloatArray
    last_sample_s: FloatArray

    def __len__(self) -> int:
        return int(self.index.size)


def steady_block_means(telemetry: DeviceTelemetry, series_name: str, block_s: float) -> BlockMeans:
    """Block means of a throughput series' steady samples after warm-up; partial and unfinished blocks are left out."""
    raw = telemetry.metric(THROUGHPUT_PREFIX + series_name)
    series = telemetry.steady(series_name, raw).after(telemetry.warmup_end_s).finite()
    if not len(series):
        empty = np.empty(0)
        return BlockMeans(np.empty(0, dtype=np.int64), empty, empty, empty)
    index = np.floor(series.time_s / block_s).astype(np.int64)
    starts = np.flatnonzero(np.diff(index, prepend=index[0] - 1))
    counts = np.diff(np.append(starts, len(series)))
    min_count = max(1, math.ceil(MIN_BLOCK_COVERAGE * block_s / telemetry.sample_interval_s))
    # A block still open at the end of the data would change as samples arrive; an on-line run waits for it.
    complete = (index[starts] + 1) * block_s <= telemetry.end_s
    keep = (counts >= min_count) & complete
    return BlockMeans(
        index[starts][keep],
        (np.add.reduceat(series.values, starts) / counts)[keep],
        series.time_s[starts][keep],
        series.time_s[starts + counts - 1][keep],
    )


@dataclass(frozen=True)
class _Chart:
    """A lower CUSUM in units of the baseline level: allowance and threshold, and what they promise."""

    history_blocks: int
    noise_ratio: float
    lag1_autocorrelation: float
    threshold_ratio: float
    allowance_sd: float
    threshold_sd: float
    in_control_arl_blocks: float
    min_drop_arl_blocks: float


@dataclass(frozen=True)
class _Drift:
    """A drift that met the rule: when, how deep, and against what."""

    onset_s: float
    detected_s: float
    last_seen_s: float
    recovered: bool
    episodes: int
    level_ratio: float
    lowest_level_ratio: float
    level: float
    expected_level: float
    baseline_level: float
    baseline_start_s: float
    baseline_end_s: float
    diurnal_amplitude: float
    chart: _Chart


def detect_drift(telemetry: DeviceTelemetry, limits: DriftLimits) -> list[Detection]:
    """Find each throughput series of one device that drifts below its own post-warm-up baseline."""
    limits = _for_campaign_length(limits, telemetry)
    detections: list[Detection] = []
    for metric in telemetry.metrics_with_prefix(THROUGHPUT_PREFIX):
        series_name = metric.removeprefix(THROUGHPUT_PREFIX)
        drift = _drift(steady_block_means(telemetry, series_name, limits.block_s), limits, subject=metric)
        if drift is not None:
            detections.append(_detection(telemetry.device, series_name, drift, limits))
    return detections


def _for_campaign_length(limits: DriftLimits, telemetry: DeviceTelemetry) -> DriftLimits:
    """Blocks and baseline shrunk in proportion for a campaign planned shorter than a day (a demo of minutes)."""
    block_s = telemetry.block_s(limits.block_s)
    if block_s == limits.block_s:
        return limits
    shrink = block_s / limits.block_s
    return limits.model_copy(update={"block_s": block_s, "baseline_s": limits.baseline_s * shrink})


def _drift(blocks: BlockMeans, limits: DriftLimits, *, subject: str) -> _Drift | None:
    baseline_blocks = round(limits.baseline_s / limits.block_s)
    if len(blocks) <= baseline_blocks:
        logger.debug(
            "%s: %d steady blocks, more than %d needed for a drift verdict", subject, len(blocks), baseline_blocks
        )
        return None
    baseline_level = float(np.median(blocks.mean[:baseline_blocks]))
    if not baseline_level > 0.0:
        logger.warning("%s: baseline throughput %.3g is not positive, no ratio to judge", subject, baseline_level)
        return None
    relative = blocks.mean / baseline_level
    centre_s = ((blocks.index + 0.5) * limits.block_s).astype(np.float64)
    expected, extra_allowance, amplitude = _expected_level(relative, centre_s, baseline_blocks, limits)
    charts, chart_of_block = _charts(relative, centre_s, baseline_blocks, limits)
    threshold = np.array([chart.threshold_ratio for chart in charts])[chart_of_block]

    ratio = relative[baseline_blocks:] / expected
    excess = (1.0 - ratio) - 0.5 * limits.min_detectable_drop - extra_allowance
    increments = np.minimum(excess, threshold / MIN_ALARM_BLOCKS)
    # Page's CUSUM max(0, S + x) is the running sum less its running minimum (floored at zero): vectorised,
    # it screens the common healthy series, and is exactly the chart up to its first alarm.
    running = np.cumsum(increments)
    cusum = running - np.minimum(np.minimum.accumulate(running), 0.0)
    alarms = np.flatnonzero(cusum >= threshold)
    if not alarms.size:
        return None
    first = int(alarms[0])
    resting = np.flatnonzero(cusum[:first] <= 0.0)
    onset = int(resting[-1]) + 1 if resting.size else 0

    state = _capped_cusum(increments[first:], threshold[first:])
    alarmed = np.flatnonzero(state >= threshold[first:]) + first
    last = int(alarmed[-1])
    # Each return of the chart to zero closes an episode; an episode counts if it alarmed.
    episode = np.cumsum(np.concatenate([[0.0], state[:-1]]) <= 0.0)
    sustained_blocks = max(1, round(SUSTAINED_S / limits.block_s))
    # Trailing medians, the first blocks padded with the first ratio so every window is full.
    padded = np.pad(ratio, (sustained_blocks - 1, 0), mode="edge")
    levels = np.median(np.lib.stride_tricks.sliding_window_view(padded, sustained_blocks)[alarmed], axis=1)
    return _Drift(
        onset_s=float(blocks.first_sample_s[baseline_blocks + onset]),
        detected_s=float((blocks.index[baseline_blocks + first] + 1) * limits.block_s),
        last_seen_s=float(blocks.last_sample_s[baseline_blocks + last]),
        recovered=bool(state[-1] <= 0.0),
        episodes=int(np.unique(episode[alarmed - first]).size),
        level_ratio=float(levels[-1]),
        lowest_level_ratio=float(levels.min()),
        level=float(levels[-1] * baseline_level * expected[last]),
        expected_level=float(baseline_level * expected[last]),
        baseline_level=baseline_level,
        baseline_start_s=float(blocks.first_sample_s[0]),
        baseline_end_s=float(blocks.last_sample_s[baseline_blocks - 1]),
        diurnal_amplitude=float(amplitude[last]),
        chart=charts[int(chart_of_block[first])],
    )


def _charts(
    relative: FloatArray, centre_s: FloatArray, baseline_blocks: int, limits: DriftLimits
) -> tuple[list[_Chart], npt.NDArray[np.int64]]:
    """The chart in force for each monitored block, and the charts: re-estimated from all earlier blocks each
    time the history doubles, so that the noise is known ever better and never from the blocks it judges."""
    checkpoints = [baseline_blocks]
    while checkpoints[-1] * 2 < relative.size:
        checkpoints.append(checkpoints[-1] * 2)
    charts = [_chart(relative[:end], centre_s[:end], limits) for end in checkpoints]
    monitored = np.arange(baseline_blocks, relative.size)
    return charts, np.searchsorted(np.array(checkpoints), monitored, side="right") - 1


def _chart(history: FloatArray, centre_s: FloatArray, limits: DriftLimits) -> _Chart:
    """Scale the CUSUM by the history's robust block noise and solve its threshold for the in-control ARL."""
    residual = _unexplained(history, centre_s, limits)
    noise = float(stats.median_abs_deviation(residual, scale="normal"))
    lag1 = float(acf(residual, nlags=1, fft=False)[1]) if noise > 0.0 else 0.0
    lag1 = min(max(lag1, 0.0), MAX_LAG1_AUTOCORRELATION) if math.isfinite(lag1) else 0.0
    # Taken at its upper confidence bound: a few hours of blocks can make the noise look quieter than it is,
    # and the chart's false-alarm rate grows steeply as its noise is underestimated.
    independent_blocks = history.size * (1.0 - lag1) / (1.0 + lag1)
    degrees_of_freedom = max(1.0, MAD_EFFICIENCY * independent_blocks)
    upper_factor = math.sqrt(degrees_of_freedom / float(stats.chi2.ppf(NOISE_BOUND_TAIL, degrees_of_freedom)))
    inflation = math.sqrt((1.0 + lag1) / (1.0 - lag1))
    noise_ratio = max(noise * inflation * upper_factor, MIN_NOISE_SHARE_OF_DROP * limits.min_detectable_drop)
    # The allowance is half the drop to catch (the classic optimum for that shift), in units of the level, so
    # that departures smaller than that drain the sum however quiet the device is.
    allowance_sd = 0.5 * limits.min_detectable_drop / noise_ratio
    in_control_arl_blocks = limits.in_control_arl_days * SECONDS_PER_DAY / limits.block_s
    threshold_sd = _threshold_for_arl(allowance_sd, in_control_arl_blocks)
    return _Chart(
        history_blocks=int(history.size),
        noise_ratio=noise_ratio,
        lag1_autocorrelation=lag1,
        threshold_ratio=threshold_sd * noise_ratio,
        allowance_sd=allowance_sd,
        threshold_sd=threshold_sd,
        in_control_arl_blocks=in_control_arl_blocks,
        min_drop_arl_blocks=_siegmund_arl(limits.min_detectable_drop / noise_ratio - allowance_sd, threshold_sd),
    )


def _unexplained(history: FloatArray, centre_s: FloatArray, limits: DriftLimits) -> FloatArray:
    """What the history's level does not explain: its residual about a 24 h harmonic once it spans a day, about
    its Theil-Sen line before (the cycle, or a trend, is not noise and would blunt the chart)."""
    elapsed_s = centre_s - centre_s[0]
    if elapsed_s[-1] >= SECONDS_PER_DAY - limits.block_s and limits.max_diurnal_amplitude > 0.0:
        angle = 2.0 * np.pi * centre_s / SECONDS_PER_DAY
        design = np.stack([np.ones_like(angle), np.cos(angle), np.sin(angle)], axis=1)
        weights, *_ = np.linalg.lstsq(design, history, rcond=None)
        fitted: FloatArray = design @ weights
        return history - fitted
    fit = stats.theilslopes(history, elapsed_s)
    line: FloatArray = fit.intercept + fit.slope * elapsed_s
    return history - line


def _siegmund_arl(drift_sd: float, threshold_sd: float) -> float:
    """Siegmund's approximation of a CUSUM's average run length, in blocks, for a walk of this mean per block."""
    overshoot = 2.0 * drift_sd * (threshold_sd + SIEGMUND_OVERSHOOT)
    if drift_sd == 0.0:
        return (threshold_sd + SIEGMUND_OVERSHOOT) ** 2
    return (math.exp(-overshoot) + overshoot - 1.0) / (2.0 * drift_sd**2)


def _threshold_for_arl(allowance_sd: float, arl_blocks: float) -> float:
    """The CUSUM threshold, in noise standard deviations, whose in-control ARL is arl_blocks (Siegmund)."""

    def log_arl_excess(threshold_sd: float) -> float:
        # In control the walk drifts down by the allowance; in logs, so that exp() cannot overflow.
        exponent = 2.0 * allowance_sd * (threshold_sd + SIEGMUND_OVERSHOOT)
        log_numerator = exponent if exponent > 30.0 else math.log(math.expm1(exponent) - exponent)
        return log_numerator - math.log(2.0 * allowance_sd**2) - math.log(arl_blocks)

    if log_arl_excess(0.0) >= 0.0:
        return 0.0
    upper = 1.0
    while log_arl_excess(upper) < 0.0:
        upper *= 2.0
    return float(optimize.brentq(log_arl_excess, 0.0, upper, xtol=1e-6))


def _expected_level(
    relative: FloatArray, centre_s: FloatArray, baseline_blocks: int, limits: DriftLimits
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each monitored block's expected level relative to the baseline, any allowance the diurnal cycle adds, and
    the fitted cycle's amplitude, from the blocks before it only."""
    angle = 2.0 * np.pi * centre_s / SECONDS_PER_DAY
    cos, sin = np.cos(angle), np.sin(angle)
    # Least squares of the relative level on [1, cos, sin] over all earlier blocks, for every block at once from
    # running sums of the normal equations; the intercept absorbs any level shift, so only the cycle is kept.
    terms = (np.ones_like(cos), cos, sin, cos * cos, cos * sin, sin * sin, relative, cos * relative, sin * relative)
    sums = [np.concatenate([[0.0], np.cumsum(term)])[baseline_blocks:-1] for term in terms]
    n, c, s, cc, cs, ss, y, cy, sy = sums
    normal = np.stack([np.stack([n, c, s], -1), np.stack([c, cc, cs], -1), np.stack([s, cs, ss], -1)], -2)
    history_s = centre_s[baseline_blocks - 1 : -1] - centre_s[0]
    fitted = history_s >= SECONDS_PER_DAY - limits.block_s
    # A history that saw too little of the day (a workload run only at night) cannot separate cycle from level.
    eigenvalues = np.linalg.eigvalsh(normal[fitted])
    fitted[fitted] = eigenvalues[:, -1] < MAX_FIT_CONDITION * eigenvalues[:, 0]
    normal[~fitted] = np.eye(3)
    solution = np.linalg.solve(normal, np.stack([y, cy, sy], -1)[..., None])[..., 0]
    cos_weight, sin_weight = solution[:, 1], solution[:, 2]
    amplitude = np.hypot(cos_weight, sin_weight)
    # A fitted cycle larger than the one allowed is not trusted: a fault early in the history can pose as one.
    shrink = np.minimum(1.0, limits.max_diurnal_amplitude / np.maximum(amplitude, np.finfo(float).tiny))
    cos_weight, sin_weight, amplitude = cos_weight * shrink, sin_weight * shrink, amplitude * shrink
    monitored = slice(baseline_blocks, None)
    cycle_now = cos_weight * cos[monitored] + sin_weight * sin[monitored]
    cycle_at_baseline = cos_weight * cos[:baseline_blocks].mean() + sin_weight * sin[:baseline_blocks].mean()
    expected = np.where(fitted, (1.0 + cycle_now) / (1.0 + cycle_at_baseline), 1.0)
    # Unfitted, a cycle of the allowed amplitude moves the level by at most 2 A sin(pi dt / day) in dt.
    since_baseline_s = centre_s[monitored] - centre_s[:baseline_blocks].mean()
    envelope = (
        2.0 * limits.max_diurnal_amplitude * np.sin(np.minimum(np.pi * since_baseline_s / SECONDS_PER_DAY, np.pi / 2))
    )
    return expected, np.where(fitted, 0.0, envelope), np.where(fitted, amplitude, 0.0)


def _capped_cusum(increments: FloatArray, threshold: FloatArray) -> FloatArray:
    """The CUSUM from its first alarm on, held at the threshold while the drop lasts so that it can tell when the
    drop ends within a block or two, however long it lasted."""
    state = np.empty(increments.size)
    level = float(threshold[0])
    state[0] = level
    for position, (increment, cap) in enumerate(zip(increments.tolist(), threshold.tolist(), strict=True)):
        if position:
            level = min(cap, max(0.0, level + increment))
            state[position] = level
    return state


def _detection(device: str, series_name: str, drift: _Drift, limits: DriftLimits) -> Detection:
    chart = drift.chart
    critical = drift.lowest_level_ratio < limits.min_sustained_throughput_ratio - CRITICAL_RATIO_MARGIN
    arl_days = chart.in_control_arl_blocks * limits.block_s / SECONDS_PER_DAY
    method = f"a CUSUM for a {limits.min_detectable_drop * 100:.3g} % drop (in-control ARL {arl_days:.0f} days)"
    cycle = f" after its {drift.diurnal_amplitude * 100:.1f} % daily cycle" if drift.diurnal_amplitude >= 0.001 else ""
    levels = f"{drift.level:.4g} vs {drift.expected_level:.4g} per s{cycle}"
    episodes = f" in {drift.episodes} episodes" if drift.episodes > 1 else ""
    name = capitalised(series_name)
    limit = f"acceptance limit {limits.min_sustained_throughput_ratio * 100:.0f} %"
    if drift.recovered:
        explanation = (
            f"{name} throughput fell to {drift.level_ratio * 100:.1f} % of its post-warm-up baseline ({levels}) "
            f"from {format_utc(drift.onset_s)}{episodes}, caught by {method}, and has been back at its baseline "
            f"since {format_utc(drift.last_seen_s)}; {limit}."
        )
    else:
        explanation = (
            f"{name} throughput has fallen to {drift.level_ratio * 100:.1f} % of its post-warm-up baseline ({levels}) "
            f"since {format_utc(drift.onset_s)}{episodes}, caught at {format_utc(drift.detected_s)} by {method}; "
            f"{limit}."
        )
    return Detection(
        device=device,
        kind="throughput_drift",
        subject=THROUGHPUT_PREFIX + series_name,
        severity="critical" if critical else "warning",
        onset_s=drift.onset_s,
        detected_s=drift.detected_s,
        last_seen_s=drift.last_seen_s,
        explanation=explanation,
        evidence={
            "level_ratio": drift.level_ratio,
            "lowest_level_ratio": drift.lowest_level_ratio,
            "level": drift.level,
            "expected_level": drift.expected_level,
            "baseline_level": drift.baseline_level,
            "baseline_start_s": drift.baseline_start_s,
            "baseline_end_s": drift.baseline_end_s,
            "min_sustained_throughput_ratio": limits.min_sustained_throughput_ratio,
            "min_detectable_drop": limits.min_detectable_drop,
            "diurnal_amplitude": drift.diurnal_amplitude,
            "episodes": drift.episodes,
            "recovered": "yes" if drift.recovered else "no",
            "block_s": limits.block_s,
            "noise_ratio": chart.noise_ratio,
            "noise_history_blocks": chart.history_blocks,
            "lag1_autocorrelation": chart.lag1_autocorrelation,
            "cusum_allowance_sd": chart.allowance_sd,
            "cusum_threshold_sd": chart.threshold_sd,
            "in_control_arl_days": arl_days,
            "min_drop_arl_minutes": chart.min_drop_arl_blocks * limits.block_s / 60.0,
            "method": "one-sided lower CUSUM on block means; threshold by Siegmund's ARL approximation",
        },
    )

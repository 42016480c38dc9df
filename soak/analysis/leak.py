"""Memory-leak detector: a sustained, significant and practically large growth of a memory series."""

import logging

import numpy as np
from scipy import stats

from soak.analysis.series import Detection, Series, capitalised, format_p_value, format_utc

logger = logging.getLogger(__name__)

MIN_SAMPLES = 20
# Averaging into this many blocks turns minutes of autocorrelated readings into nearly independent points
# while keeping enough of them for Kendall's test and a Theil-Sen interval to mean something.
TREND_BLOCKS = 25
# A leak that began inside the window must leave at least this many blocks of growth to be told from noise.
MIN_RAMP_BLOCKS = 6
CRITICAL_RATE_FACTOR = 10.0
CRITICAL_DAYS_TO_EXHAUST = 7.0

BYTES_PER_MIB = 2.0**20
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0


def detect_leak(
    series: Series,
    *,
    warmup_end_s: float,
    max_rate_mib_per_hour: float,
    min_growth_mib: float,
    significance: float,
    capacity_bytes: float | None,
    subject: str,
) -> Detection | None:
    """Report a memory leak when a byte series keeps growing after warm-up faster than the allowed rate."""
    if not 0.0 < significance < 1.0:
        raise ValueError(f"significance must be between 0 and 1 (e.g. 0.01), got {significance}")
    if max_rate_mib_per_hour < 0.0:
        raise ValueError(f"max_rate_mib_per_hour must be zero or more, got {max_rate_mib_per_hour}")
    if capacity_bytes is not None and capacity_bytes <= 0.0:
        raise ValueError(f"capacity_bytes must be positive or None when unknown, got {capacity_bytes}")

    window = series.after(warmup_end_s).finite()
    if len(window) < MIN_SAMPLES or window.time_s[-1] <= window.time_s[0]:
        logger.debug("%s: %d samples after warm-up, %d needed for a leak verdict", subject, len(window), MIN_SAMPLES)
        return None

    # Significance is judged once, on the whole post-warm-up window, so that picking the onset below cannot
    # manufacture it. One-sided: only growth is a leak. A garbage-collected sawtooth returns to its level,
    # so its block means carry no monotone trend.
    blocks = window.block_means(min(TREND_BLOCKS, len(window)))
    p_value = float(stats.kendalltau(blocks.time_s, blocks.values, alternative="greater").pvalue)
    if not p_value < significance:
        return None

    onset_s = _growth_onset_s(blocks, window_start_s=float(window.time_s[0]))
    growth = window.after(onset_s)
    growth_blocks = growth.block_means(min(TREND_BLOCKS, len(growth)))
    confidence = 1.0 - significance
    fit = stats.theilslopes(growth_blocks.values, growth_blocks.time_s - onset_s, alpha=confidence)
    rate_mib_per_hour = _mib_per_hour(float(fit.slope))
    ci_low_mib_per_hour = _mib_per_hour(float(fit.low_slope))
    ci_high_mib_per_hour = _mib_per_hour(float(fit.high_slope))
    if not (ci_low_mib_per_hour > 0.0 and rate_mib_per_hour > max_rate_mib_per_hour):
        return None
    # A short window can make a few MiB of allocator settling look like a fast leak; below this much real
    # growth the evidence is too thin to call it one, however significant the slope.
    growth_mib = rate_mib_per_hour * (float(window.time_s[-1]) - onset_s) / SECONDS_PER_HOUR
    if growth_mib < min_growth_mib:
        return None

    window_end_s = float(window.time_s[-1])
    evidence: dict[str, float | int | str] = {
        "rate_mib_per_hour": rate_mib_per_hour,
        "ci_low_mib_per_hour": ci_low_mib_per_hour,
        "ci_high_mib_per_hour": ci_high_mib_per_hour,
        "confidence": confidence,
        "p_value": p_value,
        "kendall_blocks": len(blocks),
        "n_samples": len(window),
        "n_growth_samples": len(growth),
        "window_start_s": float(window.time_s[0]),
        "window_end_s": window_end_s,
        "limit_mib_per_hour": max_rate_mib_per_hour,
        "growth_mib": growth_mib,
    }
    capacity_clause = ""
    days_to_exhaust: float | None = None
    if capacity_bytes is not None:
        slope_bytes_per_s = float(fit.slope)
        level_now_bytes = float(fit.intercept) + slope_bytes_per_s * (window_end_s - onset_s)
        headroom_bytes = max(capacity_bytes - level_now_bytes, 0.0)
        days_to_exhaust = headroom_bytes / slope_bytes_per_s / SECONDS_PER_DAY
        percent_per_day = 100.0 * slope_bytes_per_s * SECONDS_PER_DAY / capacity_bytes
        evidence["capacity_bytes"] = capacity_bytes
        evidence["percent_of_capacity_per_day"] = percent_per_day
        evidence["days_to_exhaust"] = days_to_exhaust
        capacity_clause = f", {percent_per_day:.1f} % of capacity per day, full in about {days_to_exhaust:.1f} days"

    critical = rate_mib_per_hour > CRITICAL_RATE_FACTOR * max_rate_mib_per_hour or (
        days_to_exhaust is not None and days_to_exhaust < CRITICAL_DAYS_TO_EXHAUST
    )
    interval = f"{_format_rate(ci_low_mib_per_hour)} to {_format_rate(ci_high_mib_per_hour)}"
    explanation = (
        f"{capitalised(subject)} grows {_format_rate(rate_mib_per_hour)} "
        f"({confidence * 100:.3g} % CI {interval}, {format_p_value(p_value)}) "
        f"since {format_utc(onset_s)}{capacity_clause}; limit {_format_rate(max_rate_mib_per_hour)}."
    )
    return Detection(
        kind="memory_leak",
        severity="critical" if critical else "warning",
        onset_s=onset_s,
        last_seen_s=window_end_s,
        explanation=explanation,
        evidence=evidence,
    )


def _growth_onset_s(blocks: Series, *, window_start_s: float) -> float:
    """Estimate when growth began: the knee of the best flat-then-linear least-squares fit to block means."""
    # A leak that starts after warm-up leaves the series flat and then rising; a hinge fit's knee is where
    # it leaves its early level. A knee at the first block means the growth spans the whole window.
    time_s = blocks.time_s - blocks.time_s[0]
    best_knee = 0
    best_sse = np.inf
    for knee in range(len(blocks) - MIN_RAMP_BLOCKS + 1):
        design = np.column_stack([np.ones_like(time_s), np.maximum(time_s - time_s[knee], 0.0)])
        coefficients = np.linalg.lstsq(design, blocks.values, rcond=None)[0]
        sse = float(np.sum((blocks.values - design @ coefficients) ** 2))
        if sse < best_sse and coefficients[1] > 0.0:
            best_knee, best_sse = knee, sse
    return window_start_s if best_knee == 0 else float(blocks.time_s[best_knee])


def _mib_per_hour(rate_bytes_per_s: float) -> float:
    return rate_bytes_per_s * SECONDS_PER_HOUR / BYTES_PER_MIB


def _format_rate(rate_mib_per_hour: float) -> str:
    if abs(rate_mib_per_hour) >= 1024.0:
        return f"{rate_mib_per_hour / 1024.0:.1f} GiB/h"
    if abs(rate_mib_per_hour) >= 10.0:
        return f"{rate_mib_per_hour:.0f} MiB/h"
    return f"{rate_mib_per_hour:.1f} MiB/h"

"""Throughput-drop detector: sustained throughput well below the post-warm-up baseline."""

import logging

import numpy as np
from scipy import stats

from soak.analysis.series import Detection, Series, capitalised, format_p_value, format_utc

logger = logging.getLogger(__name__)

MIN_SAMPLES = 30
MIN_WINDOW_SAMPLES = 10
# The baseline and the recent level are each the median of this share of the post-warm-up samples.
WINDOW_FRACTION = 0.25
# Each window is averaged into at most this many blocks before the rank test, so that autocorrelated readings
# do not pass for independent evidence; ten against ten still allows p-values far below usual significances.
BLOCKS_PER_WINDOW = 10
CRITICAL_RATIO_MARGIN = 0.15
# A drop smaller than this many robust standard deviations of the baseline cannot be told from the device's
# own variability (e.g. a CPU shared with the host); a dedicated accelerator's ~1 % noise never reaches it.
MIN_DROP_IN_BASELINE_SD = 3.0


def detect_throughput_drop(
    series: Series,
    *,
    warmup_end_s: float,
    min_ratio: float,
    significance: float,
    unit: str,
    subject: str,
) -> Detection | None:
    """Report a throughput drop when the recent level stays significantly below min_ratio of the baseline."""
    if not 0.0 < significance < 1.0:
        raise ValueError(f"significance must be between 0 and 1 (e.g. 0.01), got {significance}")
    if not 0.0 < min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in (0, 1], e.g. 0.95 for 95 % of baseline, got {min_ratio}")

    window = series.after(warmup_end_s).finite()
    if len(window) < MIN_SAMPLES:
        logger.debug("%s: %d samples after warm-up, %d needed for a drop verdict", subject, len(window), MIN_SAMPLES)
        return None

    window_samples = max(MIN_WINDOW_SAMPLES, int(len(window) * WINDOW_FRACTION))
    baseline = Series(window.time_s[:window_samples], window.values[:window_samples])
    recent = Series(window.time_s[-window_samples:], window.values[-window_samples:])
    baseline_level = float(np.median(baseline.values))
    recent_level = float(np.median(recent.values))
    if baseline_level <= 0.0:
        logger.warning("%s: baseline %.3g %s is not positive, no ratio to judge", subject, baseline_level, unit)
        return None
    ratio = recent_level / baseline_level
    if not ratio < min_ratio:
        return None
    baseline_sd = float(stats.median_abs_deviation(baseline.values, scale="normal"))
    if baseline_level - recent_level <= MIN_DROP_IN_BASELINE_SD * baseline_sd:
        logger.debug("%s: drop to %.1f %% is within %g baseline sd", subject, ratio * 100, MIN_DROP_IN_BASELINE_SD)
        return None

    blocks = min(BLOCKS_PER_WINDOW, window_samples)
    p_value = float(
        stats.mannwhitneyu(
            baseline.block_means(blocks).values, recent.block_means(blocks).values, alternative="greater"
        ).pvalue
    )
    if not p_value < significance:
        return None

    onset_s = _cusum_onset_s(window, baseline_level=baseline_level, min_ratio=min_ratio)
    threshold = min_ratio * baseline_level
    last_seen_s = float(window.time_s[np.flatnonzero(window.values < threshold)[-1]])
    critical = ratio < min_ratio - CRITICAL_RATIO_MARGIN
    explanation = (
        f"{capitalised(subject)} has fallen to {ratio * 100:.1f} % of its post-warm-up baseline "
        f"({baseline_level:.4g} to {recent_level:.4g} {unit}, {format_p_value(p_value)}) "
        f"since about {format_utc(onset_s)}; limit {min_ratio * 100:.0f} %."
    )
    return Detection(
        kind="throughput_drop",
        severity="critical" if critical else "warning",
        onset_s=onset_s,
        last_seen_s=last_seen_s,
        explanation=explanation,
        evidence={
            "baseline": baseline_level,
            "recent": recent_level,
            "ratio": ratio,
            "min_ratio": min_ratio,
            "unit": unit,
            "p_value": p_value,
            "baseline_sd": baseline_sd,
            "blocks_per_window": blocks,
            "n_samples": len(window),
            "window_samples": window_samples,
            "baseline_start_s": float(baseline.time_s[0]),
            "baseline_end_s": float(baseline.time_s[-1]),
            "recent_start_s": float(recent.time_s[0]),
            "recent_end_s": float(recent.time_s[-1]),
            "onset_method": "one-sided CUSUM, start of the excursion that reaches its maximum",
        },
    )


def _cusum_onset_s(window: Series, *, baseline_level: float, min_ratio: float) -> float:
    """Estimate when the drop began with Page's one-sided lower CUSUM on the series relative to baseline."""
    # The reference sits halfway between the baseline and the finding threshold: a sample below it counts as
    # evidence of the drop, one above it as evidence against. An allowance tied to the user's tolerance rather
    # than to the noise drains noise excursions before the drop quickly, and dates a gradual decline from when
    # it was halfway to the threshold. Only argmin and argmax are used below, so no further scaling is needed.
    reference_ratio = 0.5 * (1.0 + min_ratio)
    cumulative = np.cumsum(reference_ratio - window.values / baseline_level)
    # The reset CUSUM max(0, S + x) equals the plain cumulative sum minus its running minimum (floored at 0),
    # so its excursions start right after that minimum. The onset is where the excursion reaching the CUSUM's
    # maximum left zero for good; earlier excursions that fell back to zero were noise.
    cusum = cumulative - np.minimum.accumulate(np.minimum(cumulative, 0.0))
    peak = int(np.argmax(cusum))
    lowest = int(np.argmin(cumulative[: peak + 1]))
    onset_index = lowest + 1 if cumulative[lowest] < 0.0 else 0
    return float(window.time_s[min(onset_index, peak)])

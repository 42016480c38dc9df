"""Throughput-drop detector on synthetic throughput series with autocorrelated noise."""

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal

from soak.analysis.series import Detection, Series
from soak.analysis.throughput import detect_throughput_drop

START_S = 1_764_000_000.0
SAMPLE_PERIOD_S = 30.0
DURATION_S = 8 * 3600.0
WARMUP_S = 900.0
BASELINE_TFLOPS = 400.0
MIN_RATIO = 0.95
SIGNIFICANCE = 0.01


def ar1_noise(rng: np.random.Generator, n: int, *, sd: float, phi: float) -> npt.NDArray[np.float64]:
    """Stationary AR(1) noise with marginal standard deviation sd."""
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    shocks[0] = rng.normal(0.0, sd)
    noise: npt.NDArray[np.float64] = signal.lfilter([1.0], [1.0, -phi], shocks)
    return noise


def elapsed_s() -> npt.NDArray[np.float64]:
    return np.arange(0.0, DURATION_S, SAMPLE_PERIOD_S)


def throughput_series(
    relative_level: npt.NDArray[np.float64], *, seed: int, noise_sd: float = 0.015, phi: float = 0.8
) -> Series:
    """Throughput in TFLOP/s: the relative level times the baseline, with relative AR(1) noise."""
    rng = np.random.default_rng(seed)
    noise = ar1_noise(rng, relative_level.size, sd=noise_sd, phi=phi)
    return Series(START_S + elapsed_s(), BASELINE_TFLOPS * (relative_level + noise))


def decay_level(*, final_ratio: float, onset_s: float, time_constant_s: float = 300.0) -> npt.NDArray[np.float64]:
    """Steady at 1, then decaying exponentially to final_ratio from onset_s (a card starting to throttle)."""
    since_onset_s = np.maximum(elapsed_s() - onset_s, 0.0)
    return 1.0 - (1.0 - final_ratio) * (1.0 - np.exp(-since_onset_s / time_constant_s))


def detect(series: Series, *, warmup_end_s: float = START_S + WARMUP_S) -> Detection | None:
    return detect_throughput_drop(
        series,
        warmup_end_s=warmup_end_s,
        min_ratio=MIN_RATIO,
        significance=SIGNIFICANCE,
        unit="TFLOP/s",
        subject="gemm throughput",
    )


def test_decay_is_found_with_its_ratio_and_onset() -> None:
    true_onset_s = 5 * 3600.0
    detection = detect(throughput_series(decay_level(final_ratio=0.85, onset_s=true_onset_s), seed=1))

    assert detection is not None
    assert detection.kind == "throughput_drop"
    assert detection.severity == "warning"
    evidence = detection.evidence
    assert float(evidence["ratio"]) == pytest.approx(0.85, abs=0.015)
    assert float(evidence["baseline"]) == pytest.approx(BASELINE_TFLOPS, rel=0.01)
    assert evidence["unit"] == "TFLOP/s"
    assert float(evidence["p_value"]) < SIGNIFICANCE
    assert detection.onset_s == pytest.approx(START_S + true_onset_s, abs=600.0)
    assert detection.last_seen_s <= START_S + elapsed_s()[-1]
    assert detection.last_seen_s >= START_S + elapsed_s()[-10]
    assert detection.explanation.startswith("Gemm throughput has fallen to ")
    assert "TFLOP/s" in detection.explanation


def test_drop_far_below_the_limit_is_critical() -> None:
    detection = detect(throughput_series(decay_level(final_ratio=0.7, onset_s=4 * 3600.0), seed=2))

    assert detection is not None
    assert detection.severity == "critical"
    assert float(detection.evidence["ratio"]) == pytest.approx(0.7, abs=0.015)


def test_steady_noisy_throughput_raises_at_most_one_false_alarm_in_fifty_runs() -> None:
    steady = np.ones(elapsed_s().size)
    # 2 % noise that wanders for tens of minutes (phi 0.95 at 30 s) is the hard case for a windowed median.
    false_alarms = sum(
        detect(throughput_series(steady, seed=seed, noise_sd=0.02, phi=0.95)) is not None for seed in range(50)
    )

    assert false_alarms <= 1, f"{false_alarms} false throughput-drop findings in 50 steady series"


def test_dip_that_recovers_is_not_a_finding() -> None:
    dip = np.where((elapsed_s() > 3 * 3600.0) & (elapsed_s() < 4.5 * 3600.0), 0.8, 1.0)

    assert detect(throughput_series(dip, seed=3)) is None


def test_slow_diurnal_swing_is_not_a_finding() -> None:
    # A 2 % swing with a 16 h period: the baseline sits at the crest and the recent window at the trough.
    swing = 1.0 + 0.02 * np.cos(2.0 * np.pi * elapsed_s() / (16 * 3600.0))

    assert detect(throughput_series(swing, seed=4)) is None


def test_boost_clocks_during_warm_up_are_not_the_baseline() -> None:
    # Over two hours, a cold card runs 10 % fast for its first 30 minutes, then settles at its steady clock.
    boosted = np.where(elapsed_s() < 1800.0, 1.1, 1.0)
    full = throughput_series(boosted, seed=5)
    first_two_hours = full.time_s < START_S + 2 * 3600.0
    series = Series(full.time_s[first_two_hours], full.values[first_two_hours])

    assert detect(series, warmup_end_s=START_S + 2100.0) is None
    # Taken from the boosted minutes, the baseline would be 10 % high and the settled card look throttled.
    assert detect(series, warmup_end_s=START_S) is not None


def test_too_few_samples_after_warm_up_give_no_verdict() -> None:
    series = throughput_series(decay_level(final_ratio=0.5, onset_s=DURATION_S - 600.0), seed=6, noise_sd=0.001)

    assert detect(series, warmup_end_s=float(series.time_s[-25])) is None
    assert detect(series, warmup_end_s=float(series.time_s[-40])) is not None


def test_bad_min_ratio_names_the_field() -> None:
    with pytest.raises(ValueError, match="min_ratio"):
        detect_throughput_drop(
            throughput_series(np.ones(elapsed_s().size), seed=7),
            warmup_end_s=START_S,
            min_ratio=95.0,
            significance=SIGNIFICANCE,
            unit="TFLOP/s",
            subject="gemm throughput",
        )


def test_a_level_shift_within_the_devices_own_noise_is_not_a_drop() -> None:
    # A CPU shared with a busy host: ±15 % swings that last tens of samples. A 20 % lower stretch at the end
    # is within three of its baseline's standard deviations, so it is no evidence of a slower device.
    level = np.where(elapsed_s() > DURATION_S * 0.75, 0.80, 1.0)
    noisy = throughput_series(level, seed=5, noise_sd=0.15, phi=0.9)
    quiet = throughput_series(level, seed=5, noise_sd=0.01, phi=0.9)

    assert detect(noisy) is None
    found = detect(quiet)
    assert found is not None and float(found.evidence["baseline_sd"]) < 0.05 * BASELINE_TFLOPS

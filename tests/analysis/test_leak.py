"""Memory-leak detector on synthetic memory series with autocorrelated noise."""

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal

from soak.analysis.leak import detect_leak
from soak.analysis.series import Detection, Series

START_S = 1_764_000_000.0
SAMPLE_PERIOD_S = 15.0
DURATION_S = 6 * 3600.0
WARMUP_S = 1800.0
MIB = 2.0**20
GIB = 2.0**30
CAPACITY_BYTES = 141e9
BASE_BYTES = 40 * GIB
LIMIT_MIB_PER_HOUR = 64.0
SIGNIFICANCE = 0.01


def ar1_noise(rng: np.random.Generator, n: int, *, sd: float, phi: float) -> npt.NDArray[np.float64]:
    """Stationary AR(1) noise with marginal standard deviation sd."""
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    shocks[0] = rng.normal(0.0, sd)
    noise: npt.NDArray[np.float64] = signal.lfilter([1.0], [1.0, -phi], shocks)
    return noise


def sample_times_s() -> npt.NDArray[np.float64]:
    return START_S + np.arange(0.0, DURATION_S, SAMPLE_PERIOD_S)


def memory_series(
    level_bytes: npt.NDArray[np.float64], *, seed: int, noise_sd_bytes: float = 64 * MIB, phi: float = 0.9
) -> Series:
    rng = np.random.default_rng(seed)
    return Series(sample_times_s(), level_bytes + ar1_noise(rng, level_bytes.size, sd=noise_sd_bytes, phi=phi))


def leak_level_bytes(rate_mib_per_hour: float, *, leak_start_s: float = START_S) -> npt.NDArray[np.float64]:
    hours_leaking = np.maximum(sample_times_s() - leak_start_s, 0.0) / 3600.0
    return BASE_BYTES + rate_mib_per_hour * MIB * hours_leaking


def detect(
    series: Series,
    *,
    warmup_end_s: float = START_S + WARMUP_S,
    max_rate_mib_per_hour: float = LIMIT_MIB_PER_HOUR,
    capacity_bytes: float | None = CAPACITY_BYTES,
    min_growth_mib: float = 0.0,
) -> Detection | None:
    return detect_leak(
        series,
        warmup_end_s=warmup_end_s,
        max_rate_mib_per_hour=max_rate_mib_per_hour,
        min_growth_mib=min_growth_mib,
        significance=SIGNIFICANCE,
        capacity_bytes=capacity_bytes,
        subject="device memory",
    )


def test_linear_leak_is_found_with_its_rate_inside_the_interval() -> None:
    detection = detect(memory_series(leak_level_bytes(200.0), seed=1))

    assert detection is not None
    assert detection.kind == "memory_leak"
    assert detection.severity == "warning"
    evidence = detection.evidence
    assert float(evidence["ci_low_mib_per_hour"]) <= 200.0 <= float(evidence["ci_high_mib_per_hour"])
    assert float(evidence["rate_mib_per_hour"]) == pytest.approx(200.0, rel=0.15)
    assert float(evidence["p_value"]) < SIGNIFICANCE
    # The leak runs from the start, so growth is dated from the end of warm-up, not from a later knee.
    assert detection.onset_s == pytest.approx(START_S + WARMUP_S, abs=900.0)
    assert detection.last_seen_s == sample_times_s()[-1]
    percent_per_day = 100.0 * 200.0 * MIB * 24 / CAPACITY_BYTES
    assert float(evidence["percent_of_capacity_per_day"]) == pytest.approx(percent_per_day, rel=0.15)
    assert detection.explanation.startswith("Device memory grows ")
    assert "limit 64 MiB/h" in detection.explanation


def test_leak_that_starts_mid_run_is_dated_from_its_start() -> None:
    leak_start_s = START_S + 3 * 3600.0
    detection = detect(memory_series(leak_level_bytes(400.0, leak_start_s=leak_start_s), seed=2))

    assert detection is not None
    assert detection.onset_s == pytest.approx(leak_start_s, abs=1200.0)
    evidence = detection.evidence
    # Measured over the growth only, the rate is the leak's, not diluted by the flat first half.
    assert float(evidence["ci_low_mib_per_hour"]) <= 400.0 <= float(evidence["ci_high_mib_per_hour"])


@pytest.mark.parametrize(
    ("rate_mib_per_hour", "capacity_bytes"),
    [(2048.0, None), (150.0, 48 * GIB)],
    ids=["ten-times-the-limit", "full-within-a-week"],
)
def test_fast_leak_or_one_that_fills_the_card_within_a_week_is_critical(
    rate_mib_per_hour: float, capacity_bytes: float | None
) -> None:
    detection = detect(memory_series(leak_level_bytes(rate_mib_per_hour), seed=3), capacity_bytes=capacity_bytes)

    assert detection is not None
    assert detection.severity == "critical"


def test_flat_noise_raises_at_most_one_false_alarm_in_fifty_runs() -> None:
    flat_bytes = np.full(sample_times_s().size, BASE_BYTES)
    # With no practical limit, only the statistics stand between noise and a finding.
    false_alarms = sum(
        detect(memory_series(flat_bytes, seed=seed), max_rate_mib_per_hour=0.0) is not None for seed in range(50)
    )

    assert false_alarms <= 1, f"{false_alarms} false leak findings in 50 flat series"


def test_growth_below_the_practical_limit_is_not_a_finding() -> None:
    creep = memory_series(leak_level_bytes(20.0), seed=4, noise_sd_bytes=4 * MIB)

    assert detect(creep) is None
    # The same creep is statistically clear: it is the 64 MiB/h limit that keeps it out.
    assert detect(creep, max_rate_mib_per_hour=0.0) is not None


def sawtooth_bytes(
    *, peak_rise_bytes: float, period_s: float, trough_rate_mib_per_hour: float
) -> npt.NDArray[np.float64]:
    elapsed_s = sample_times_s() - START_S
    phase = np.mod(elapsed_s, period_s) / period_s
    return BASE_BYTES + peak_rise_bytes * phase + trough_rate_mib_per_hour * MIB * elapsed_s / 3600.0


def test_sawtooth_that_garbage_collection_brings_back_is_not_a_leak() -> None:
    # Rises 1.5 GiB/h between collections every 40 minutes, far above the limit, then drops back each time.
    sawtooth = sawtooth_bytes(peak_rise_bytes=1 * GIB, period_s=2400.0, trough_rate_mib_per_hour=0.0)

    assert detect(memory_series(sawtooth, seed=5)) is None


def test_sawtooth_whose_troughs_keep_rising_is_a_leak() -> None:
    sawtooth = sawtooth_bytes(peak_rise_bytes=1 * GIB, period_s=2400.0, trough_rate_mib_per_hour=300.0)

    detection = detect(memory_series(sawtooth, seed=5))

    assert detection is not None
    assert (
        float(detection.evidence["ci_low_mib_per_hour"]) <= 300.0 <= float(detection.evidence["ci_high_mib_per_hour"])
    )


def test_allocator_filling_during_warm_up_then_flat_is_not_a_leak() -> None:
    # The caching allocator takes 30 GiB over the first two hours as shapes vary, then holds it.
    elapsed_s = sample_times_s() - START_S
    filling = 10 * GIB + 30 * GIB * (1.0 - np.exp(-elapsed_s / 1440.0))
    series = memory_series(filling, seed=6)

    assert detect(series, warmup_end_s=START_S + 2.5 * 3600.0) is None
    # Counting the warm-up would have called the fill a leak.
    assert detect(series, warmup_end_s=START_S) is not None


def test_too_few_samples_after_warm_up_give_no_verdict() -> None:
    series = memory_series(leak_level_bytes(5000.0), seed=7, noise_sd_bytes=1 * MIB)
    warmup_end_s = float(series.time_s[-15])

    assert detect(series, warmup_end_s=warmup_end_s) is None
    assert detect(series, warmup_end_s=float(series.time_s[-30])) is not None


def test_missing_readings_are_skipped() -> None:
    level = leak_level_bytes(200.0)
    level[::7] = np.nan

    detection = detect(memory_series(level, seed=8))

    assert detection is not None
    after_warmup = sample_times_s() >= START_S + WARMUP_S
    assert detection.evidence["n_samples"] == np.count_nonzero(np.isfinite(level[after_warmup]))
    assert (
        float(detection.evidence["ci_low_mib_per_hour"]) <= 200.0 <= float(detection.evidence["ci_high_mib_per_hour"])
    )


def test_bad_parameters_name_the_field() -> None:
    series = memory_series(leak_level_bytes(200.0), seed=9)

    with pytest.raises(ValueError, match="significance"):
        detect_leak(
            series,
            warmup_end_s=START_S,
            max_rate_mib_per_hour=64.0,
            min_growth_mib=0.0,
            significance=1.5,
            capacity_bytes=None,
            subject="device memory",
        )
    with pytest.raises(ValueError, match="capacity_bytes"):
        detect(series, capacity_bytes=0.0)


def test_block_means_average_consecutive_blocks_without_dropping_samples() -> None:
    series = Series(np.arange(10.0), np.arange(10.0) * 2.0)

    blocks = series.block_means(3)

    np.testing.assert_allclose(blocks.time_s, [1.0, 4.0, 7.5])
    np.testing.assert_allclose(blocks.values, [2.0, 8.0, 15.0])
    assert len(series.after(4.0)) == 6


def test_series_rejects_unsorted_times() -> None:
    with pytest.raises(ValueError, match="ascending"):
        Series(np.array([2.0, 1.0]), np.array([0.0, 0.0]))


def test_a_few_mib_of_settling_in_a_short_window_is_not_a_leak() -> None:
    # Two minutes of an allocator settling: 3 MiB of clean growth, a steep "rate" but too little to judge.
    time_s = START_S + np.arange(0.0, 120.0, 1.0)
    level_bytes = BASE_BYTES + np.linspace(0.0, 3 * MIB, time_s.size)
    series = Series(time_s, level_bytes + ar1_noise(np.random.default_rng(7), time_s.size, sd=16 * 1024, phi=0.5))

    assert detect(series, warmup_end_s=START_S, min_growth_mib=32.0) is None
    found = detect(series, warmup_end_s=START_S, min_growth_mib=0.0)
    assert found is not None and float(found.evidence["growth_mib"]) < 32.0

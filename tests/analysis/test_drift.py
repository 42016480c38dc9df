"""Throughput-drift detector on synthetic throughput with a daily cycle and AR(1) noise."""

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pydantic
import pytest
from scipy import signal

from soak.analysis.drift import DriftLimits, detect_drift
from soak.analysis.series import Detection, Series
from soak.analysis.telemetry import DeviceTelemetry

FloatArray = npt.NDArray[np.float64]
Level = Callable[[FloatArray], FloatArray]

START_S = 1_764_000_000.0
DAY_S = 86400.0
HOUR_S = 3600.0
SAMPLE_INTERVAL_S = 10.0
WARMUP_S = 1800.0
BASELINE = 400.0
LIMITS = DriftLimits()


def steady(elapsed_s: FloatArray) -> FloatArray:
    return np.ones_like(elapsed_s)


def step(at_s: float, ratio: float) -> Level:
    return lambda elapsed_s: np.where(elapsed_s >= at_s, ratio, 1.0)


def device(
    level: Level,
    *,
    days: float,
    seed: int,
    diurnal: float = 0.02,
    crest_s: float = WARMUP_S + HOUR_S,
    phi: float = 0.8,
    end_s: float | None = None,
    steady_windows: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> DeviceTelemetry:
    """A device whose gemm throughput is level x a daily cycle peaking at crest_s, with 1 % AR(1) noise."""
    elapsed_s = np.arange(0.0, days * DAY_S, SAMPLE_INTERVAL_S)
    if end_s is not None:
        elapsed_s = elapsed_s[elapsed_s <= end_s - START_S]
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 0.01 * np.sqrt(1.0 - phi**2), elapsed_s.size)
    noise = signal.lfilter([1.0], [1.0, -phi], shocks)
    cycle = 1.0 + diurnal * np.cos(2.0 * np.pi * (elapsed_s - crest_s) / DAY_S)
    values = BASELINE * (level(elapsed_s) * cycle + noise)
    time_s = START_S + elapsed_s
    return DeviceTelemetry(
        device="gpu0",
        node="node-a",
        vendor="nvidia",
        model="H200",
        memory_total_bytes=None,
        start_s=START_S,
        warmup_end_s=START_S + WARMUP_S,
        end_s=float(time_s[-1]),
        sample_interval_s=SAMPLE_INTERVAL_S,
        series={"throughput.gemm": Series(time_s, values)},
        steady_windows=steady_windows or {},
        planned_end_s=START_S + days * DAY_S,
    )


def only(detections: list[Detection]) -> Detection:
    assert len(detections) == 1, [detection.explanation for detection in detections]
    return detections[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_percent_step_is_caught_within_half_an_hour(seed: int) -> None:
    onset_s = 3 * DAY_S + 7 * HOUR_S + 13 * 60.0

    detection = only(detect_drift(device(step(onset_s, 0.97), days=5, seed=seed), LIMITS))

    assert (detection.kind, detection.subject, detection.severity) == ("throughput_drift", "throughput.gemm", "warning")
    assert detection.onset_s == pytest.approx(START_S + onset_s, abs=600.0)
    assert START_S + onset_s < detection.detected_s <= START_S + onset_s + 1800.0
    assert detection.last_seen_s > START_S + 5 * DAY_S - 3600.0
    assert float(detection.evidence["level_ratio"]) == pytest.approx(0.97, abs=0.01)
    assert float(detection.evidence["in_control_arl_days"]) == LIMITS.in_control_arl_days
    assert detection.explanation.startswith("Gemm throughput has fallen to 9")
    assert "in-control ARL 10000 days" in detection.explanation


@pytest.mark.parametrize(
    ("seed", "crest_hour", "diurnal", "phi"),
    [(10, 1.5, 0.02, 0.8), (11, 7.0, 0.02, 0.9), (12, 13.5, 0.015, 0.6), (13, 19.0, 0.01, 0.9)],
)
def test_healthy_fortnight_with_a_daily_cycle_raises_nothing(
    seed: int, crest_hour: float, diurnal: float, phi: float
) -> None:
    # Crest at hour 1.5 puts the baseline on the daily peak: half a day later the trough is 4 % below it.
    telemetry = device(steady, days=14, seed=seed, diurnal=diurnal, crest_s=crest_hour * HOUR_S, phi=phi)

    assert detect_drift(telemetry, LIMITS) == []


def test_slow_decay_is_caught_by_the_time_it_has_lost_three_percent() -> None:
    onset_s = 2.5 * DAY_S
    loss_per_s = 0.0025 / HOUR_S  # 0.25 % an hour

    detection = only(
        detect_drift(device(lambda t: 1.0 - loss_per_s * np.maximum(t - onset_s, 0.0), days=5, seed=3), LIMITS)
    )

    lost_at_detection = loss_per_s * (detection.detected_s - START_S - onset_s)
    assert 0.01 < lost_at_detection <= 0.03
    assert detection.severity == "warning"


def test_drop_far_below_the_acceptance_limit_is_critical() -> None:
    detection = only(detect_drift(device(step(3 * DAY_S, 0.8), days=4, seed=4), LIMITS))

    assert detection.severity == "critical"
    assert float(detection.evidence["level_ratio"]) == pytest.approx(0.8, abs=0.01)
    # Three blocks at least (an alarm is never raised on fewer), the step falling inside the first.
    assert detection.detected_s - (START_S + 3 * DAY_S) <= 4 * LIMITS.block_s


def test_drop_that_recovered_is_reported_with_its_end_in_the_past() -> None:
    dip_start_s, dip_end_s = 3 * DAY_S, 3 * DAY_S + 3 * HOUR_S
    level = lambda t: np.where((t >= dip_start_s) & (t < dip_end_s), 0.95, 1.0)  # noqa: E731

    detection = only(detect_drift(device(level, days=5, seed=5), LIMITS))

    assert detection.last_seen_s == pytest.approx(START_S + dip_end_s, abs=600.0)
    assert "has been back at its baseline since" in detection.explanation
    assert detection.evidence["recovered"] == "yes"


def test_only_steady_windows_are_judged() -> None:
    # From day 2 every 15-minute slot opens with 5 minutes at half speed (a checkpoint reload) that the
    # scheduler keeps out of the steady windows.
    days = 4
    slot_starts_s = START_S + np.arange(0.0, days * DAY_S, 900.0)
    reload = lambda t: np.where((t >= 2 * DAY_S) & (np.mod(t, 900.0) < 300.0), 0.5, 1.0)  # noqa: E731
    windows = {
        "gemm": [(float(start_s) + 300.0, float(start_s) + 900.0 - SAMPLE_INTERVAL_S) for start_s in slot_starts_s]
    }

    assert detect_drift(device(reload, days=days, seed=6, steady_windows=windows), LIMITS) == []
    assert len(detect_drift(device(reload, days=days, seed=6), LIMITS)) == 1


def test_detection_does_not_depend_on_later_data() -> None:
    onset_s = 2 * DAY_S + 5 * HOUR_S
    full = only(detect_drift(device(step(onset_s, 0.96), days=4, seed=7), LIMITS))

    for end_s in (full.detected_s, full.detected_s + 6 * HOUR_S):
        cut = only(detect_drift(device(step(onset_s, 0.96), days=4, seed=7, end_s=end_s), LIMITS))
        assert (cut.onset_s, cut.detected_s) == (full.onset_s, full.detected_s)
    assert detect_drift(device(step(onset_s, 0.96), days=4, seed=7, end_s=full.detected_s - 1.0), LIMITS) == []


def demo_scale(device: str, values: FloatArray) -> DeviceTelemetry:
    """A device of a 3-minute campaign sampled every second (the demo's scale), warm-up over after 20 s."""
    elapsed_s = np.arange(0.0, float(values.size))
    return DeviceTelemetry(
        device=device,
        node="sim-node-0",
        vendor="simulated",
        model="Simulated H200",
        memory_total_bytes=None,
        start_s=START_S,
        warmup_end_s=START_S + 20.0,
        end_s=START_S + values.size - 1.0,
        sample_interval_s=1.0,
        series={"throughput.gemm": Series(START_S + elapsed_s, values)},
    )


def test_a_campaign_of_minutes_is_charted_on_proportionally_shorter_blocks() -> None:
    # The demo's scale: 3 minutes at 1 s, throughput falling 720 %/h from a minute after warm-up.
    elapsed_s = np.arange(0.0, 180.0, 1.0)
    rng = np.random.default_rng(21)
    decay = np.clip(1.0 - 2.0 * np.maximum(elapsed_s - 80.0, 0.0) / 1000.0, 0.0, None)

    drift = only(detect_drift(demo_scale("sim2", BASELINE * (decay + rng.normal(0.0, 0.01, elapsed_s.size))), LIMITS))

    assert START_S + 70.0 <= drift.onset_s <= START_S + 100.0
    assert drift.detected_s <= START_S + 120.0


def test_isolated_slow_seconds_of_a_short_campaign_are_not_drift() -> None:
    rng = np.random.default_rng(5)
    values = BASELINE * (1.0 + rng.normal(0.0, 0.01, 180))

    # Three seconds at half speed where the host paused, far apart.
    paused = values.copy()
    paused[[90, 121, 150]] *= 0.5
    assert detect_drift(demo_scale("sim3", paused), LIMITS) == []
    # Six slow seconds in a row are a drop, however short: the chart speaks.
    slowed = values.copy()
    slowed[90:96] *= 0.5
    assert only(detect_drift(demo_scale("sim3", slowed), LIMITS)).onset_s == START_S + 90.0


def test_too_little_steady_running_gives_no_verdict() -> None:
    # Warm-up plus less than the two-hour baseline: nothing to compare with, even for a halved throughput.
    telemetry = device(step(WARMUP_S + HOUR_S, 0.5), days=1, seed=8, end_s=START_S + WARMUP_S + 1.9 * HOUR_S)

    assert detect_drift(telemetry, LIMITS) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_detectable_drop", 3.0),
        ("block_s", 0.0),
        ("in_control_arl_days", 0.5),
        ("baseline_s", 600.0),
        ("min_peers", 1),
    ],
)
def test_bad_limits_name_the_field(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        DriftLimits.model_validate({field: value})

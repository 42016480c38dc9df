"""Thermal and power detector on crafted device telemetry with autocorrelated noise and diurnal cycles."""

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pydantic
import pytest
from scipy import signal

from agents.nvml.clock_events import CLOCK_EVENT_FLAGS
from soak.analysis.series import Detection, Series
from soak.analysis.telemetry import DeviceTelemetry
from soak.analysis.thermal import ThermalLimits, detect_thermal
from tests.analysis.builders import h200

START_S = 1_790_000_000.0
SAMPLE_S = 10.0
WARMUP_S = 3600.0
WARMUP_END_S = START_S + WARMUP_S
DAY_S = 86400.0
SLOWDOWN_C = 83.0

IDLE = CLOCK_EVENT_FLAGS["gpu_idle"]
POWER_CAP = CLOCK_EVENT_FLAGS["sw_power_cap"]
HW_SLOWDOWN = CLOCK_EVENT_FLAGS["hw_slowdown"]
SW_THERMAL = CLOCK_EVENT_FLAGS["sw_thermal_slowdown"]
HW_THERMAL = CLOCK_EVENT_FLAGS["hw_thermal_slowdown"]
POWER_BRAKE = CLOCK_EVENT_FLAGS["hw_power_brake_slowdown"]

Array = npt.NDArray[np.float64]


def ar1_noise(rng: np.random.Generator, n: int, *, sd: float, phi: float) -> Array:
    """Stationary AR(1) noise with marginal standard deviation sd."""
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    shocks[0] = rng.normal(0.0, sd)
    noise: Array = signal.lfilter([1.0], [1.0, -phi], shocks)
    return noise


def times_s(duration_s: float) -> Array:
    return START_S + np.arange(0.0, duration_s, SAMPLE_S)


def plateaus(rng: np.random.Generator, n: int, share: float) -> npt.NDArray[np.bool_]:
    """Stretches of minutes (not isolated samples) covering about `share` of the time, as a cap or slowdown holds."""
    persistent = ar1_noise(rng, n, sd=1.0, phi=0.98)
    held: npt.NDArray[np.bool_] = persistent > np.quantile(persistent, 1.0 - share)
    return held


def healthy_temperature_c(time_s: Array, rng: np.random.Generator) -> Array:
    """65 °C ± 5 °C over the day plus sensor and load noise: 60-70 °C against an 83 °C slowdown threshold."""
    diurnal = 5.0 * np.sin(2 * np.pi * (time_s - START_S) / DAY_S)
    return 65.0 + diurnal + ar1_noise(rng, time_s.size, sd=0.7, phi=0.95)


def device(
    series: Mapping[str, tuple[Array, Array]],
    *,
    end_s: float,
    steady_windows: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> DeviceTelemetry:
    return h200(
        start_s=START_S,
        warmup_end_s=WARMUP_END_S,
        end_s=end_s,
        sample_interval_s=SAMPLE_S,
        series={name: Series(time_s, values) for name, (time_s, values) in series.items()},
        steady_windows=steady_windows or {},
    )


def truncated(telemetry: DeviceTelemetry, cut_s: float) -> DeviceTelemetry:
    """The telemetry an on-line run would have held at cut_s."""
    return device(
        {
            name: (series.time_s[series.time_s <= cut_s], series.values[series.time_s <= cut_s])
            for name, series in telemetry.series.items()
        },
        end_s=cut_s,
        steady_windows=telemetry.steady_windows,
    )


def findings(detections: list[Detection], kind: str) -> dict[str, Detection]:
    return {detection.subject: detection for detection in detections if detection.kind == kind}


def alarms(detections: list[Detection]) -> list[Detection]:
    return [detection for detection in detections if detection.severity != "info"]


def clock_series(time_s: Array, masks: npt.NDArray[np.int64]) -> dict[str, tuple[Array, Array]]:
    """Reasons, the SM clock they leave (1980 MHz free, lower under each reason) and NVML's violation counters."""
    clock_mhz = np.full(time_s.size, 1980.0)
    clock_mhz[(masks & POWER_CAP) != 0] = 1750.0
    clock_mhz[(masks & (SW_THERMAL | HW_THERMAL)) != 0] = 1400.0
    clock_mhz[(masks & (HW_SLOWDOWN | POWER_BRAKE)) != 0] = 900.0
    thermal_s = np.cumsum(((masks & (SW_THERMAL | HW_THERMAL)) != 0) * SAMPLE_S)
    power_s = np.cumsum(((masks & POWER_CAP) != 0) * SAMPLE_S)
    return {
        "device.clock_event_reasons": (time_s, masks.astype(np.float64)),
        "device.sm_clock_mhz": (time_s, clock_mhz),
        "device.sm_clock_max_mhz": (time_s, np.full(time_s.size, 1980.0)),
        "device.violation_thermal_s": (time_s, thermal_s.astype(np.float64)),
        "device.violation_power_s": (time_s, power_s.astype(np.float64)),
    }


def first_throttled_s(telemetry: DeviceTelemetry, bits: int) -> float:
    """When the injected reason first held on the device (the plateaus start at random after the fault)."""
    reasons = telemetry.metric("device.clock_event_reasons")
    return float(reasons.time_s[(reasons.values.astype(np.int64) & bits) == bits][0])


def throttling_device(
    *, seed: int, extra_bits: int, onset_s: float, share: float = 0.3, duration_s: float = 2 * DAY_S
) -> DeviceTelemetry:
    """A busy device at its power cap 60 % of the time that, from onset_s, also throttles for another reason."""
    rng = np.random.default_rng(seed)
    time_s = times_s(duration_s)
    masks = np.where(plateaus(rng, time_s.size, 0.6), POWER_CAP, 0).astype(np.int64)
    masks[plateaus(rng, time_s.size, share) & (time_s >= onset_s)] |= extra_bits
    return device(clock_series(time_s, masks), end_s=float(time_s[-1]))


def test_thermal_throttling_is_a_warning_with_its_onset_cost_and_action() -> None:
    onset_s = WARMUP_END_S + DAY_S + 3 * 3600.0 + 17 * 60.0
    telemetry = throttling_device(seed=1, extra_bits=SW_THERMAL, onset_s=onset_s)

    throttling = findings(detect_thermal(telemetry, ThermalLimits()), "throttling")

    assert set(throttling) == {"thermal", "power_cap"}
    thermal = throttling["thermal"]
    assert thermal.severity == "warning"
    assert thermal.onset_s == first_throttled_s(telemetry, SW_THERMAL)
    assert thermal.onset_s < thermal.detected_s < thermal.onset_s + 30 * 60.0
    assert "cooling" in thermal.explanation
    assert "1,400 MHz" in thermal.explanation
    # The violation counter is the thermal share of the busy time since onset, about 30 % of 1 day 20 h.
    assert (
        0.2 * (telemetry.end_s - onset_s) < float(thermal.evidence["violation_s"]) < 0.4 * (telemetry.end_s - onset_s)
    )
    assert throttling["power_cap"].severity == "info"


def test_power_cap_plateau_is_information_that_quantifies_its_cost() -> None:
    rng = np.random.default_rng(2)
    time_s = times_s(7 * DAY_S)
    masks = np.where(plateaus(rng, time_s.size, 0.8), POWER_CAP, 0).astype(np.int64)
    telemetry = device(clock_series(time_s, masks), end_s=float(time_s[-1]))

    detections = detect_thermal(telemetry, ThermalLimits())

    assert alarms(detections) == []
    power_cap = findings(detections, "throttling")["power_cap"]
    assert power_cap.severity == "info"
    assert float(power_cap.evidence["residency"]) == pytest.approx(0.8, abs=0.01)
    assert float(power_cap.evidence["clock_loss"]) == pytest.approx(1.0 - 1750.0 / 1980.0, abs=1e-6)
    assert "1,750 MHz against 1,980 MHz unthrottled (11.6 % lower)" in power_cap.explanation


def test_power_cap_above_a_configured_limit_is_a_warning() -> None:
    rng = np.random.default_rng(3)
    time_s = times_s(DAY_S)
    masks = np.where(plateaus(rng, time_s.size, 0.8), POWER_CAP, 0).astype(np.int64)
    telemetry = device(clock_series(time_s, masks), end_s=float(time_s[-1]))

    power_cap = findings(detect_thermal(telemetry, ThermalLimits(max_power_cap_residency=0.5)), "throttling")

    assert power_cap["power_cap"].severity == "warning"
    assert "power limit" in power_cap["power_cap"].explanation


@pytest.mark.parametrize(
    ("bits", "subject", "action"),
    [
        (SW_THERMAL, "thermal", "cooling"),
        # NVML raises hw_slowdown beside a hardware thermal slowdown or a power brake: the cause is the finding.
        (HW_THERMAL | HW_SLOWDOWN, "thermal", "cooling"),
        (HW_SLOWDOWN, "hw_slowdown", "RMA"),
        (POWER_BRAKE | HW_SLOWDOWN, "power_brake", "power-brake signal"),
    ],
)
def test_each_throttle_reason_is_its_own_finding_with_its_own_action(bits: int, subject: str, action: str) -> None:
    onset_s = WARMUP_END_S + 6 * 3600.0
    telemetry = throttling_device(seed=4, extra_bits=bits, onset_s=onset_s, duration_s=DAY_S)

    throttling = findings(detect_thermal(telemetry, ThermalLimits()), "throttling")

    assert set(throttling) == {subject, "power_cap"}
    assert throttling[subject].severity == "warning"
    assert action in throttling[subject].explanation
    assert throttling[subject].onset_s == first_throttled_s(telemetry, bits)


def test_hardware_slowdown_and_thermal_slowdown_are_told_apart_on_one_device() -> None:
    rng = np.random.default_rng(5)
    time_s = times_s(2 * DAY_S)
    thermal_onset_s = WARMUP_END_S + 4 * 3600.0
    hw_onset_s = WARMUP_END_S + DAY_S
    masks = np.zeros(time_s.size, dtype=np.int64)
    masks[plateaus(rng, time_s.size, 0.2) & (time_s >= thermal_onset_s)] |= HW_THERMAL | HW_SLOWDOWN
    masks[plateaus(rng, time_s.size, 0.2) & (time_s >= hw_onset_s)] |= HW_SLOWDOWN
    telemetry = device(clock_series(time_s, masks), end_s=float(time_s[-1]))

    throttling = findings(detect_thermal(telemetry, ThermalLimits()), "throttling")

    assert set(throttling) == {"thermal", "hw_slowdown"}
    reasons = telemetry.metric("device.clock_event_reasons").values.astype(np.int64)
    hw_alone = (reasons & (HW_SLOWDOWN | HW_THERMAL)) == HW_SLOWDOWN
    assert throttling["thermal"].onset_s == first_throttled_s(telemetry, HW_THERMAL)
    assert throttling["hw_slowdown"].onset_s == float(time_s[hw_alone][0])
    assert "power supply" in throttling["hw_slowdown"].explanation


def test_throttle_reasons_while_idle_are_not_findings() -> None:
    rng = np.random.default_rng(6)
    time_s = times_s(DAY_S)
    idle = plateaus(rng, time_s.size, 0.5)
    # An idle device reports its clocks lowered; that is no loss of work.
    masks = np.where(idle, IDLE | SW_THERMAL | POWER_CAP, 0).astype(np.int64)
    telemetry = device(clock_series(time_s, masks), end_s=float(time_s[-1]))

    assert findings(detect_thermal(telemetry, ThermalLimits()), "throttling") == {}


def temperature_device(temperature_c: Array, time_s: Array, *, with_threshold: bool = True) -> DeviceTelemetry:
    series = {"device.temperature_c": (time_s, temperature_c)}
    if with_threshold:
        series["device.temperature_slowdown_c"] = (time_s, np.full(time_s.size, SLOWDOWN_C))
    return device(series, end_s=float(time_s[-1]))


def runaway_device(*, seed: int, onset_s: float, rate_c_per_minute: float = 0.05) -> DeviceTelemetry:
    rng = np.random.default_rng(seed)
    time_s = times_s(2 * DAY_S)
    climb_c = rate_c_per_minute * np.maximum(time_s - onset_s, 0.0) / 60.0
    return temperature_device(np.minimum(healthy_temperature_c(time_s, rng) + climb_c, 95.0), time_s)


def test_runaway_temperature_heading_to_slowdown_is_a_margin_warning() -> None:
    onset_s = WARMUP_END_S + DAY_S
    telemetry = runaway_device(seed=7, onset_s=onset_s)
    temperature = telemetry.metric("device.temperature_c")
    # The noise-free temperature crosses 78 °C (a 5 °C margin) here; the detector may not call it long before.
    rising = temperature.time_s > onset_s
    noise_free_c = 65.0 + 5.0 * np.sin(2 * np.pi * (temperature.time_s - START_S) / DAY_S)
    noise_free_c += 0.05 * np.maximum(temperature.time_s - onset_s, 0.0) / 60.0
    crossing_s = float(temperature.time_s[rising & (noise_free_c > SLOWDOWN_C - 5.0)][0])

    margin = findings(detect_thermal(telemetry, ThermalLimits()), "thermal_margin")["temperature"]

    assert margin.severity == "warning"
    assert crossing_s - 10 * 60.0 < margin.detected_s < crossing_s + 20 * 60.0
    assert margin.onset_s <= margin.detected_s
    assert float(margin.evidence["window_margin_c"]) < 5.0
    assert "°C/day" in margin.explanation
    assert "83 °C slowdown threshold" in margin.explanation


def test_healthy_diurnal_temperature_with_comfortable_margin_is_silent() -> None:
    rng = np.random.default_rng(8)
    time_s = times_s(28 * DAY_S)
    telemetry = temperature_device(healthy_temperature_c(time_s, rng), time_s)

    assert detect_thermal(telemetry, ThermalLimits()) == []


def ageing_device(*, seed: int) -> DeviceTelemetry:
    """Cooling ageing 1.2 °C a day from a 28 °C margin: by the end of day 10 about 16 °C are left, 13 days' worth,
    inside a 14-day horizon; the 5 °C limit itself is not reached before day 18."""
    rng = np.random.default_rng(seed)
    time_s = times_s(14 * DAY_S)
    days = (time_s - WARMUP_END_S) / DAY_S
    temperature_c = 55.0 + 1.2 * days + 2.0 * np.sin(2 * np.pi * days) + ar1_noise(rng, time_s.size, sd=0.7, phi=0.95)
    return temperature_device(temperature_c, time_s)


def test_margin_falling_for_days_is_a_warning_before_it_runs_out() -> None:
    telemetry = ageing_device(seed=9)

    margin = findings(detect_thermal(telemetry, ThermalLimits(margin_horizon_days=14.0)), "thermal_margin")

    falling = margin["temperature"]
    assert falling.severity == "warning"
    assert WARMUP_END_S + 9 * DAY_S <= falling.detected_s <= WARMUP_END_S + 11 * DAY_S
    assert float(falling.evidence["trend_c_per_day"]) == pytest.approx(-1.2, abs=0.2)
    assert "daily means" in falling.explanation


def test_no_margin_finding_without_a_slowdown_threshold() -> None:
    time_s = times_s(DAY_S)
    telemetry = temperature_device(np.full(time_s.size, 90.0), time_s, with_threshold=False)

    assert findings(detect_thermal(telemetry, ThermalLimits()), "thermal_margin") == {}


SLOT_S = 3600.0
STEADY_S = 20 * 60.0


def slotted_device(*, seed: int, drop: float, days: float = 2.0) -> DeviceTelemetry:
    """GEMM runs 20 min steady each hour: full speed for its first 30 s, `drop` lower at the power cap after."""
    rng = np.random.default_rng(seed)
    time_s = times_s(days * DAY_S)
    windows = [
        (start_s, start_s + STEADY_S)
        for start_s in np.arange(WARMUP_END_S + 300.0, float(time_s[-1]) - STEADY_S, SLOT_S)
    ]
    offset_s = np.full(time_s.size, np.inf)
    for start_s, end_s in windows:
        inside = (time_s >= start_s) & (time_s <= end_s)
        offset_s[inside] = time_s[inside] - start_s
    running = np.isfinite(offset_s)
    sustained = running & (offset_s >= 30.0)
    throughput = 1000.0 * (1.0 + ar1_noise(rng, time_s.size, sd=0.005, phi=0.8)) * np.where(sustained, 1.0 - drop, 1.0)
    masks = np.where(running, 0, IDLE).astype(np.int64)
    masks[sustained] |= POWER_CAP
    return device(
        {**clock_series(time_s, masks), "throughput.gemm": (time_s[running], throughput[running])},
        end_s=float(time_s[-1]),
        steady_windows={"gemm": windows},
    )


def test_sustained_tax_is_measured_and_attributed_to_the_power_cap() -> None:
    telemetry = slotted_device(seed=10, drop=0.10)

    tax = findings(detect_thermal(telemetry, ThermalLimits()), "sustained_tax")["gemm"]

    assert tax.severity == "info"
    assert float(tax.evidence["tax"]) == pytest.approx(0.10, abs=0.005)
    assert tax.evidence["dominant_reason"] == "power_cap"
    assert "of its burst throughput" in tax.explanation
    assert "mostly at the power cap" in tax.explanation


def test_sustained_tax_above_the_limit_is_a_warning() -> None:
    telemetry = slotted_device(seed=11, drop=0.10)

    tax = findings(detect_thermal(telemetry, ThermalLimits(max_sustained_tax=0.05)), "sustained_tax")["gemm"]

    assert tax.severity == "warning"
    first_window_start_s = telemetry.steady_windows["gemm"][0][0]
    assert first_window_start_s < tax.detected_s < first_window_start_s + STEADY_S
    assert "limit 5.0 %" in tax.explanation


def test_sustained_tax_without_steady_windows_uses_the_burst_after_warm_up() -> None:
    rng = np.random.default_rng(12)
    time_s = times_s(DAY_S)
    throughput = 1000.0 * (1.0 + ar1_noise(rng, time_s.size, sd=0.005, phi=0.8))
    throughput[time_s >= WARMUP_END_S + 30.0] *= 0.92
    telemetry = device({"throughput.train": (time_s, throughput)}, end_s=float(time_s[-1]))

    tax = findings(detect_thermal(telemetry, ThermalLimits()), "sustained_tax")["train"]

    assert tax.severity == "info"
    # Three burst samples carry the noise of three readings: about 0.5 % / √3 either way.
    assert float(tax.evidence["tax"]) == pytest.approx(0.08, abs=0.01)
    assert "after warm-up" in tax.explanation


def test_a_healthy_busy_device_raises_no_alarm() -> None:
    telemetry = slotted_device(seed=13, drop=0.03, days=14.0)
    rng = np.random.default_rng(14)
    time_s = times_s(14 * DAY_S)
    series = {name: (series.time_s, series.values) for name, series in telemetry.series.items()}
    series["device.temperature_c"] = (time_s, healthy_temperature_c(time_s, rng))
    series["device.temperature_slowdown_c"] = (time_s, np.full(time_s.size, SLOWDOWN_C))

    detections = detect_thermal(
        device(series, end_s=telemetry.end_s, steady_windows=telemetry.steady_windows), ThermalLimits()
    )

    assert alarms(detections) == []
    assert {(detection.kind, detection.subject) for detection in detections} == {
        ("throttling", "power_cap"),
        ("sustained_tax", "gemm"),
    }


CAUSAL_CASES: dict[str, tuple[Callable[[], DeviceTelemetry], ThermalLimits, str, str, float]] = {
    "thermal throttling": (
        lambda: throttling_device(seed=15, extra_bits=SW_THERMAL, onset_s=WARMUP_END_S + DAY_S),
        ThermalLimits(),
        "throttling",
        "thermal",
        60.0,
    ),
    "low margin": (
        lambda: runaway_device(seed=16, onset_s=WARMUP_END_S + DAY_S / 2),
        ThermalLimits(),
        "thermal_margin",
        "temperature",
        60.0,
    ),
    "falling margin": (
        lambda: ageing_device(seed=18),
        ThermalLimits(margin_horizon_days=14.0),
        "thermal_margin",
        "temperature",
        60.0,
    ),
    "sustained tax": (
        lambda: slotted_device(seed=17, drop=0.10),
        ThermalLimits(max_sustained_tax=0.05),
        "sustained_tax",
        "gemm",
        SAMPLE_S,
    ),
}


@pytest.mark.parametrize("case", sorted(CAUSAL_CASES))
def test_detection_time_uses_only_data_up_to_it(case: str) -> None:
    make, limits, kind, subject, resolution_s = CAUSAL_CASES[case]
    telemetry = make()
    full = findings(detect_thermal(telemetry, limits), kind)[subject]

    for later_s in (full.detected_s, (full.detected_s + telemetry.end_s) / 2):
        again = findings(detect_thermal(truncated(telemetry, later_s), limits), kind)[subject]
        assert again.detected_s == full.detected_s
        assert again.severity == full.severity
    before = findings(detect_thermal(truncated(telemetry, full.detected_s - resolution_s), limits), kind)
    assert subject not in before or before[subject].severity == "info"


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"max_throttle_residency": 1.5}, "max_throttle_residency"),
        ({"max_power_cap_residency": -0.1}, "max_power_cap_residency"),
        ({"min_temperature_margin_c": -2.0}, "min_temperature_margin_c"),
        ({"max_sustained_tax": 1.0}, "max_sustained_tax"),
        ({"burst_window_s": 0.0}, "burst_window_s"),
        ({"trend_window_days": 3}, "trend_window_days"),
        ({"residency_windw_s": 600.0}, "residency_windw_s"),
        ({"margin_window_s": 120.0, "evaluation_interval_s": 300.0}, "margin_window_s"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(limits: dict[str, float], field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        ThermalLimits.model_validate(limits)

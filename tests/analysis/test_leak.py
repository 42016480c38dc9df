"""Leak detector on crafted telemetry: AR(1) noise, allocator and GC sawtooth, diurnal cycles, rotating workloads."""

import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError
from scipy import signal

from soak.analysis.leak import LeakLimits, detect_leaks
from soak.analysis.series import Detection, Series
from soak.analysis.telemetry import DeviceTelemetry

FloatArray = npt.NDArray[np.float64]

DEMO_RSS_CSV = Path(__file__).parents[1] / "fixtures" / "demo" / "cpu_worker_rss.csv"
START_S = 1_764_000_000.0
WARMUP_S = 1800.0
SAMPLE_PERIOD_S = 10.0
HOUR_S = 3600.0
DAY_S = 86400.0
MIB = 2.0**20
GIB = 2.0**30
CAPACITY_BYTES = 80e9
RSS_BASE_BYTES = 6 * GIB


def sample_times_s(days: float) -> FloatArray:
    return START_S + np.arange(0.0, days * DAY_S, SAMPLE_PERIOD_S)


def ar1_noise(rng: np.random.Generator, n: int, *, sd: float, phi: float = 0.9) -> FloatArray:
    """Stationary AR(1) noise with marginal standard deviation sd."""
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    shocks[0] = rng.normal(0.0, sd)
    noise: FloatArray = signal.lfilter([1.0], [1.0, -phi], shocks)
    return noise


def sawtooth(time_s: FloatArray, *, amplitude: float, period_s: float, phase_s: float = 0.0) -> FloatArray:
    """Climbs by amplitude over each period, then collection brings it back."""
    saw: FloatArray = amplitude * np.mod(time_s - START_S + phase_s, period_s) / period_s
    return saw


def ramp(time_s: FloatArray, *, onset_s: float, rate_per_hour: float) -> FloatArray:
    grown: FloatArray = rate_per_hour * np.maximum(time_s - onset_s, 0.0) / HOUR_S
    return grown


def healthy_series(time_s: FloatArray, rng: np.random.Generator) -> dict[str, FloatArray]:
    """A worker that holds steady: noise, an allocator sawtooth in reserved, GC sawtooth and a diurnal cycle in RSS."""
    n = time_s.size
    day_phase = 2.0 * np.pi * (time_s - START_S) / DAY_S
    allocated = 30 * GIB + ar1_noise(rng, n, sd=64 * MIB)
    reserved = 34 * GIB + sawtooth(time_s, amplitude=2 * GIB, period_s=1800.0) + ar1_noise(rng, n, sd=32 * MIB)
    return {
        "worker.memory_allocated_bytes": allocated,
        "worker.memory_reserved_bytes": reserved,
        "device.memory_used_bytes": reserved + 600 * MIB + ar1_noise(rng, n, sd=8 * MIB),
        "process.rss_bytes": RSS_BASE_BYTES
        + sawtooth(time_s, amplitude=48 * MIB, period_s=600.0, phase_s=rng.uniform(0.0, 600.0))
        + 16 * MIB * np.sin(day_phase)
        + ar1_noise(rng, n, sd=8 * MIB),
        "process.open_files": 140.0 + np.round(ar1_noise(rng, n, sd=1.5)),
        "process.threads": 64.0 + np.round(ar1_noise(rng, n, sd=0.7)),
    }


def telemetry(
    time_s: FloatArray,
    values: dict[str, FloatArray],
    *,
    steady_windows: dict[str, list[tuple[float, float]]] | None = None,
    end_s: float | None = None,
    planned_end_s: float | None = None,
) -> DeviceTelemetry:
    return DeviceTelemetry(
        device="gpu3",
        node="node-b",
        vendor="nvidia",
        model="H100",
        memory_total_bytes=CAPACITY_BYTES,
        start_s=START_S,
        warmup_end_s=START_S + WARMUP_S,
        end_s=float(time_s[-1]) if end_s is None else end_s,
        sample_interval_s=SAMPLE_PERIOD_S,
        series={name: Series(time_s, series) for name, series in values.items()},
        steady_windows=steady_windows or {},
        planned_end_s=planned_end_s,
    )


def alarms(detections: list[Detection]) -> list[Detection]:
    return [detection for detection in detections if detection.severity != "info"]


def only(detections: list[Detection], kind: str) -> Detection:
    matching = [detection for detection in detections if detection.kind == kind]
    assert len(matching) == 1, f"expected one {kind}, got {detections}"
    return matching[0]


def device_leak_telemetry(*, seed: int, onset_s: float, days: float = 2.0) -> DeviceTelemetry:
    """An imported nvidia-smi log: device memory used only, leaking 0.5 % of capacity per hour from onset_s."""
    time_s = sample_times_s(days)
    rng = np.random.default_rng(seed)
    used = 40e9 + ar1_noise(rng, time_s.size, sd=48 * MIB) + ramp(time_s, onset_s=onset_s, rate_per_hour=0.004e11)
    return telemetry(time_s, {"device.memory_used_bytes": used})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_device_leak_of_half_a_percent_per_hour_is_caught_within_two_hours_with_its_onset(seed: int) -> None:
    onset_s = START_S + 9.3 * HOUR_S

    detection = only(detect_leaks(device_leak_telemetry(seed=seed, onset_s=onset_s), LeakLimits()), "memory_leak")

    # Without allocator figures (an nvidia-smi log) device memory used stands for allocated.
    assert detection.subject == "device.memory_used_bytes"
    assert detection.device == "gpu3"
    assert onset_s < detection.detected_s <= onset_s + 2 * HOUR_S
    assert detection.onset_s == pytest.approx(onset_s, abs=15 * 60)
    assert float(detection.evidence["percent_of_capacity_per_day"]) == pytest.approx(12.0, rel=0.1)
    rate_mib_per_hour = 0.004e11 / MIB
    evidence = detection.evidence
    assert float(evidence["ci_low_mib_per_hour"]) <= rate_mib_per_hour <= float(evidence["ci_high_mib_per_hour"])
    # Half full and filling 12 % a day: out of memory within a week.
    assert detection.severity == "critical"
    assert float(evidence["days_to_exhaust"]) < 7.0


def test_finding_explains_itself_with_rate_p_value_share_of_capacity_and_limit() -> None:
    telemetry_ = device_leak_telemetry(seed=4, onset_s=START_S + 6 * HOUR_S)

    explanation = only(detect_leaks(telemetry_, LeakLimits()), "memory_leak").explanation

    # The leak starts at 22:00 UTC; the onset is read off five-minute means of noisy data.
    assert re.match(r"Device memory used grows 381 MiB/h \(p < 1e-9\) since 2025-11-24 (21:[45]|22:[01])", explanation)
    assert "12 % of capacity per day" in explanation
    assert explanation.endswith("limit 114 MiB/h.")


def test_host_memory_leak_of_fifty_mb_per_hour_riding_on_a_gc_sawtooth_is_caught_within_two_hours() -> None:
    time_s = sample_times_s(2.0)
    onset_s = START_S + 14.2 * HOUR_S
    values = healthy_series(time_s, np.random.default_rng(5))
    values["process.rss_bytes"] = values["process.rss_bytes"] + ramp(time_s, onset_s=onset_s, rate_per_hour=50e6)

    detections = detect_leaks(telemetry(time_s, values), LeakLimits())

    detection = only(alarms(detections), "memory_leak")
    assert detection.subject == "process.rss_bytes"
    assert onset_s < detection.detected_s <= onset_s + 2 * HOUR_S
    assert detection.onset_s == pytest.approx(onset_s, abs=30 * 60)
    assert float(detection.evidence["rate_mib_per_hour"]) == pytest.approx(50e6 / MIB, rel=0.15)
    assert detection.severity == "warning"


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_a_healthy_week_of_noise_sawtooth_and_diurnal_cycle_raises_no_alarm(seed: int) -> None:
    time_s = sample_times_s(7.0)

    detections = detect_leaks(telemetry(time_s, healthy_series(time_s, np.random.default_rng(seed))), LeakLimits())

    assert alarms(detections) == []


@pytest.mark.parametrize("period_s", [1800.0, 3600.0, 2 * HOUR_S])
def test_sawtooth_that_garbage_collection_brings_back_is_not_a_leak(period_s: float) -> None:
    # Each tooth climbs 256 MiB, far faster than the limit, and falls back to where it began.
    time_s = sample_times_s(3.0)
    rng = np.random.default_rng(9)
    rss = (
        RSS_BASE_BYTES
        + sawtooth(time_s, amplitude=256 * MIB, period_s=period_s)
        + ar1_noise(rng, time_s.size, sd=8 * MIB)
    )

    assert detect_leaks(telemetry(time_s, {"process.rss_bytes": rss}), LeakLimits()) == []


def test_sawtooth_whose_troughs_keep_rising_is_a_leak() -> None:
    time_s = sample_times_s(2.0)
    rng = np.random.default_rng(10)
    rss = (
        RSS_BASE_BYTES
        + sawtooth(time_s, amplitude=256 * MIB, period_s=3600.0)
        + ramp(time_s, onset_s=START_S, rate_per_hour=100 * MIB)
        + ar1_noise(rng, time_s.size, sd=8 * MIB)
    )

    detection = only(detect_leaks(telemetry(time_s, {"process.rss_bytes": rss}), LeakLimits()), "memory_leak")

    assert float(detection.evidence["rate_mib_per_hour"]) == pytest.approx(100.0, rel=0.2)


def test_allocator_caching_is_a_note_not_a_leak() -> None:
    # The caching allocator keeps freed blocks: reserved (and so device memory used) climbs, allocated does not.
    time_s = sample_times_s(2.0)
    rng = np.random.default_rng(11)
    n = time_s.size
    reserved = 34 * GIB + ramp(time_s, onset_s=START_S + 8 * HOUR_S, rate_per_hour=GIB) + ar1_noise(rng, n, sd=32 * MIB)
    values = {
        "worker.memory_allocated_bytes": 30 * GIB + ar1_noise(rng, n, sd=64 * MIB),
        "worker.memory_reserved_bytes": reserved,
        "device.memory_used_bytes": reserved + 600 * MIB + ar1_noise(rng, n, sd=8 * MIB),
    }

    detections = detect_leaks(telemetry(time_s, values), LeakLimits())

    assert len(detections) == 1
    detection = detections[0]
    assert (detection.kind, detection.subject, detection.severity) == (
        "allocator_growth",
        "worker.memory_reserved_bytes",
        "info",
    )
    assert "allocated memory stays flat" in detection.explanation


def test_allocated_growth_is_one_leak_that_reserved_and_used_follow() -> None:
    time_s = sample_times_s(2.0)
    rng = np.random.default_rng(12)
    n = time_s.size
    leak = ramp(time_s, onset_s=START_S + 10 * HOUR_S, rate_per_hour=0.005 * CAPACITY_BYTES)
    allocated = 30 * GIB + leak + ar1_noise(rng, n, sd=64 * MIB)
    reserved = allocated + 4 * GIB + ar1_noise(rng, n, sd=32 * MIB)
    values = {
        "worker.memory_allocated_bytes": allocated,
        "worker.memory_reserved_bytes": reserved,
        "device.memory_used_bytes": reserved + 600 * MIB,
    }

    detections = detect_leaks(telemetry(time_s, values), LeakLimits())

    assert len(detections) == 1
    assert detections[0].subject == "worker.memory_allocated_bytes"
    assert "reserved and used follow" in detections[0].explanation


def test_open_file_leak_is_found_with_its_rate() -> None:
    time_s = sample_times_s(2.0)
    values = healthy_series(time_s, np.random.default_rng(13))
    onset_s = START_S + 12 * HOUR_S
    values["process.open_files"] = values["process.open_files"] + np.floor(
        ramp(time_s, onset_s=onset_s, rate_per_hour=30.0)
    )

    detection = only(alarms(detect_leaks(telemetry(time_s, values), LeakLimits())), "memory_leak")

    assert detection.subject == "process.open_files"
    assert detection.onset_s == pytest.approx(onset_s, abs=30 * 60)
    assert detection.explanation.startswith("Worker open files grow 30 per hour (p < 1e-9)")


def test_each_workload_of_a_rotating_mix_is_judged_against_itself() -> None:
    # Two workloads take turns in one-hour slots and hold 20 GB and 50 GB of device memory.
    time_s = sample_times_s(3.0)
    slot = np.floor((time_s - START_S) / HOUR_S).astype(np.int64) % 2
    rng = np.random.default_rng(14)
    used = np.where(slot == 0, 20e9, 50e9) + ar1_noise(rng, time_s.size, sd=32 * MIB)
    slot_starts_s = START_S + HOUR_S * np.arange(72)
    windows = {
        name: [(float(start_s) + 300.0, float(start_s) + HOUR_S - 10.0) for start_s in slot_starts_s[parity::2]]
        for parity, name in enumerate(("gemm", "train"))
    }

    assert (
        detect_leaks(telemetry(time_s, {"device.memory_used_bytes": used}, steady_windows=windows), LeakLimits()) == []
    )

    leaking = used + np.where(
        slot == 1, ramp(time_s, onset_s=START_S + DAY_S, rate_per_hour=0.01 * CAPACITY_BYTES), 0.0
    )
    detection = only(
        detect_leaks(telemetry(time_s, {"device.memory_used_bytes": leaking}, steady_windows=windows), LeakLimits()),
        "memory_leak",
    )
    assert detection.evidence["workload"] == "train"
    assert "workload train" in detection.explanation


def test_detection_time_depends_only_on_data_up_to_it() -> None:
    time_s = sample_times_s(2.0)
    values = healthy_series(time_s, np.random.default_rng(15))
    values["process.rss_bytes"] = values["process.rss_bytes"] + ramp(
        time_s, onset_s=START_S + 20 * HOUR_S, rate_per_hour=50e6
    )
    detected_s = only(detect_leaks(telemetry(time_s, values), LeakLimits()), "memory_leak").detected_s

    # The campaign is planned to run as long as before: only what had arrived by then is handed over.
    planned = {"planned_end_s": float(time_s[-1])}
    keep = time_s <= detected_s
    truncated = telemetry(
        time_s[keep], {name: series[keep] for name, series in values.items()}, end_s=detected_s, **planned
    )

    assert only(detect_leaks(truncated, LeakLimits()), "memory_leak").detected_s == detected_s
    # A sample interval earlier, the rule had not yet held.
    earlier = time_s < detected_s - SAMPLE_PERIOD_S
    before = telemetry(
        time_s[earlier],
        {name: series[earlier] for name, series in values.items()},
        end_s=detected_s - SAMPLE_PERIOD_S,
        **planned,
    )
    assert alarms(detect_leaks(before, LeakLimits())) == []


def test_a_campaign_of_minutes_is_judged_on_a_finer_grid() -> None:
    # The demo's scale: three minutes at 1 s, a fast device-memory leak on one device, none on the other.
    time_s = START_S + np.arange(0.0, 180.0, 1.0)
    rng = np.random.default_rng(17)
    flat = 20 * GIB + ar1_noise(rng, time_s.size, sd=2 * MIB)
    leaking = flat + ramp(time_s, onset_s=START_S + 40.0, rate_per_hour=16 * GIB)

    def short(memory: FloatArray) -> DeviceTelemetry:
        return DeviceTelemetry(
            device="sim5",
            node="sim-node-1",
            vendor="simulated",
            model="Simulated H200",
            memory_total_bytes=CAPACITY_BYTES,
            start_s=START_S,
            warmup_end_s=START_S + 20.0,
            end_s=float(time_s[-1]),
            sample_interval_s=1.0,
            series={"device.memory_used_bytes": Series(time_s, memory)},
        )

    leak = only(detect_leaks(short(leaking), LeakLimits()), "memory_leak")
    assert START_S + 30.0 <= leak.onset_s <= START_S + 60.0
    assert leak.detected_s < START_S + 120.0
    assert detect_leaks(short(flat), LeakLimits()) == []


def test_growth_during_warm_up_is_not_judged() -> None:
    # The caching allocator fills over the first half hour, then holds.
    time_s = sample_times_s(1.0)
    rng = np.random.default_rng(16)
    filling = 10 * GIB + 30 * GIB * (1.0 - np.exp(-(time_s - START_S) / 400.0))

    used = filling + ar1_noise(rng, time_s.size, sd=32 * MIB)

    assert detect_leaks(telemetry(time_s, {"device.memory_used_bytes": used}), LeakLimits()) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("significance", 1.5),
        ("max_device_rate_percent_per_hour", -0.1),
        ("max_host_rate_mib_per_hour", 0.0),
        ("min_growth_mib", -1.0),
        ("max_open_files_per_hour", 0.0),
    ],
)
def test_bad_limits_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        LeakLimits.model_validate({field: value})


def test_unknown_limit_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="max_rate_mib_per_hour"):
        LeakLimits.model_validate({"max_rate_mib_per_hour": 64.0})


def test_a_workload_prepared_again_on_a_higher_floor_is_no_leak() -> None:
    # The demo's CPU worker: two 45 s runs of train, the second settling 30 MiB higher (the heap the gemm run
    # between them left behind), each flat with its own noise.
    time_s = START_S + np.arange(0.0, 180.0, 1.0)
    rng = np.random.default_rng(18)
    rss = np.where(time_s < START_S + 100.0, 553 * MIB, 583 * MIB) + rng.normal(0.0, 10 * MIB, time_s.size)
    runs = {"train": [(START_S + 40.0, START_S + 72.0), (START_S + 130.0, START_S + 162.0)]}
    telemetry = DeviceTelemetry(
        device="vm/cpu0",
        node="vm",
        vendor="cpu",
        model="CPU",
        memory_total_bytes=None,
        start_s=START_S,
        warmup_end_s=START_S + 15.0,
        end_s=float(time_s[-1]),
        sample_interval_s=1.0,
        series={"process.rss_bytes": Series(time_s, rss)},
        steady_windows=runs,
    )

    assert alarms(detect_leaks(telemetry, LeakLimits())) == []


def test_a_demo_worker_building_its_model_and_swinging_is_no_leak() -> None:
    # Recorded in a demo: the CPU worker's resident memory climbs 150 MiB over its first 45 s run of train while
    # it builds the model and its thread pools, and swings by tens of MiB within seconds in the second. On 1 s
    # blocks, a floor looking back 6 s (or into the run before) read those swings as a 1.5 GiB/h leak.
    recorded = np.loadtxt(DEMO_RSS_CSV, delimiter=",", skiprows=3)
    time_s, rss = START_S + recorded[:, 0], recorded[:, 1]
    slots = {"gemm": [(0.2, 46.3), (90.9, 135.5)], "train": [(46.2, 90.9), (135.4, 180.4)]}
    slot_warmup_s, tail_s = 10.0, 3.0
    demo = DeviceTelemetry(
        device="vm/cpu0",
        node="vm",
        vendor="cpu",
        model="CPU",
        memory_total_bytes=None,
        start_s=START_S,
        warmup_end_s=START_S + 45.0,
        end_s=START_S + 181.0,
        sample_interval_s=1.0,
        series={"process.rss_bytes": Series(time_s, rss)},
        steady_windows={
            workload: [(START_S + first + slot_warmup_s, START_S + last - tail_s) for first, last in runs]
            for workload, runs in slots.items()
        },
        planned_end_s=START_S + 180.0,
    )

    assert alarms(detect_leaks(demo, LeakLimits())) == []

"""The simulated accelerator: determinism, power capping, heating, noise and each injected fault."""

import itertools
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pytest

from soak.plan import (
    DriverErrorFault,
    Fault,
    HangFault,
    MemoryLeakFault,
    SilentDataCorruptionFault,
    ThermalRunawayFault,
    ThroughputDecayFault,
)
from soak.sim.device import (
    CLOCK_REASON_HW_THERMAL,
    CLOCK_REASON_IDLE,
    CLOCK_REASON_SW_POWER_CAP,
    CLOCK_REASON_SW_THERMAL,
    SimReading,
    SimSpec,
    SimulatedDevice,
)
from soak.sim.profile import SimProfile

START_S = 1_800_000_000.0
MIB = 1 << 20
# Demands 1.15 x TDP at max clock, like dense bf16 GEMM on an H200: it lives at the power cap.
GEMM = SimProfile(unit="TFLOP/s", peak_units_per_s=989.0, power_fraction=1.15, memory_fraction=0.05)
# Demands 490 W at max clock: never reaches the cap, so its steady temperature is 30 + 0.075 x 490 = 66.75 C.
LIGHT = SimProfile(unit="steps/s", peak_units_per_s=100.0, power_fraction=0.7, memory_fraction=0.5)


def make_device(
    name: str = "sim0",
    *,
    faults: Sequence[Fault] = (),
    seed: int = 7,
    start_s: float = START_S,
) -> SimulatedDevice:
    return SimulatedDevice(SimSpec(name=name), faults=faults, campaign_start_s=START_S, seed=seed, start_s=start_s)


def run(
    device: SimulatedDevice,
    *,
    seconds: float,
    step_s: float = 1.0,
    profile: SimProfile | None = GEMM,
    duty_cycle: float = 1.0,
) -> list[SimReading]:
    """Advance a device by `seconds` in equal steps from where it is, returning every reading."""
    start_s = device.time_s
    steps = round(seconds / step_s)
    return [device.advance(start_s + index * step_s, profile, duty_cycle) for index in range(1, steps + 1)]


def at(readings: Sequence[SimReading], time_s: float) -> SimReading:
    return next(reading for reading in readings if reading.time_s >= time_s)


def lag1_autocorrelation(values: Sequence[float]) -> float:
    series = np.asarray(values) - np.mean(values)
    return float(np.dot(series[:-1], series[1:]) / np.dot(series, series))


def test_same_seed_and_times_give_identical_readings() -> None:
    faults: list[Fault] = [
        DriverErrorFault(kind="driver_errors", device="sim0", xid=79, rate_per_hour=600),
        SilentDataCorruptionFault(kind="sdc", device="sim0", rate_per_hour=600),
    ]
    schedule = [(0.25, GEMM, 1.0), (3.7, GEMM, 1.0), (60.0, None, 0.0), (0.5, LIGHT, 0.5), (400.0, GEMM, 0.8)]

    def replay(device: SimulatedDevice) -> list[SimReading]:
        now_s = START_S
        readings = []
        for step_s, profile, duty_cycle in schedule * 5:
            now_s += step_s
            readings.append(device.advance(now_s, profile, duty_cycle))
        return readings

    first_readings = replay(make_device(faults=faults))
    assert replay(make_device(faults=faults)) == first_readings
    assert sum(len(reading.driver_events) for reading in first_readings) > 0
    assert sum(reading.sdc_events for reading in first_readings) > 0


def test_devices_and_seeds_get_their_own_noise() -> None:
    def throughput(device: SimulatedDevice) -> list[float]:
        return [reading.units_per_s for reading in run(device, seconds=300)]

    reference = throughput(make_device("sim0", seed=7))
    other_device = throughput(make_device("sim1", seed=7))
    other_seed = throughput(make_device("sim0", seed=8))

    assert reference != other_device
    assert reference != other_seed
    # Different noise, same physics.
    assert np.mean(other_device[60:]) == pytest.approx(np.mean(reference[60:]), rel=0.03)


def test_idle_device_reports_idle_clock_power_and_memory() -> None:
    spec = SimSpec(name="sim0")
    reading = run(make_device(), seconds=60, profile=None, duty_cycle=0.0)[-1]

    assert reading.clock_event_reasons == CLOCK_REASON_IDLE
    assert reading.sm_clock_mhz == pytest.approx(spec.idle_sm_clock_mhz)
    assert reading.power_w == pytest.approx(spec.idle_power_w, rel=0.03)
    assert reading.temperature_c == pytest.approx(36.75, abs=1.5)
    assert reading.memory_used_bytes == spec.base_memory_used_bytes
    assert reading.units_per_s == 0.0
    assert reading.utilization_ratio == 0.0


def test_sustained_gemm_settles_at_the_power_limit_with_a_lower_clock() -> None:
    spec = SimSpec(name="sim0")
    readings = run(make_device(), seconds=180)

    assert readings[0].clock_event_reasons & CLOCK_REASON_SW_POWER_CAP
    settled = readings[-1]
    assert settled.power_w == pytest.approx(spec.tdp_w, rel=0.02)
    assert settled.clock_event_reasons & CLOCK_REASON_SW_POWER_CAP
    assert not settled.clock_event_reasons & CLOCK_REASON_IDLE
    assert 1300.0 <= settled.sm_clock_mhz <= 1600.0
    expected_units_per_s = GEMM.peak_units_per_s * settled.sm_clock_mhz / spec.max_sm_clock_mhz
    assert settled.units_per_s == pytest.approx(expected_units_per_s, rel=0.05)
    assert settled.utilization_ratio == 1.0
    assert settled.memory_used_bytes == spec.base_memory_used_bytes + int(0.05 * spec.memory_total_bytes)
    # The energy counter integrates power: three minutes mostly at 700 W.
    assert 0.9 * 180 * spec.tdp_w < settled.energy_j < 1.05 * 180 * spec.tdp_w


def test_half_duty_gemm_runs_at_max_clock_below_the_cap() -> None:
    settled = run(make_device(), seconds=120, duty_cycle=0.5)[-1]

    assert settled.clock_event_reasons == 0
    assert settled.sm_clock_mhz == pytest.approx(1980.0)
    assert settled.power_w < 700.0
    assert settled.units_per_s == pytest.approx(0.5 * GEMM.peak_units_per_s, rel=0.05)


def test_temperature_rises_toward_steady_state_with_the_thermal_time_constant() -> None:
    spec = SimSpec(name="sim0")
    idle_c = spec.ambient_temp_c + spec.thermal_resistance_c_per_w * spec.idle_power_w
    steady_c = spec.ambient_temp_c + spec.thermal_resistance_c_per_w * 490.0
    readings = run(make_device(), seconds=600, profile=LIGHT)

    one_time_constant = at(readings, START_S + spec.thermal_time_constant_s)
    risen = (one_time_constant.temperature_c - idle_c) / (steady_c - idle_c)
    assert risen == pytest.approx(1.0 - np.exp(-1.0), abs=0.05)
    assert readings[-1].temperature_c == pytest.approx(steady_c, abs=1.0)


def test_healthy_device_under_gemm_stays_below_slowdown() -> None:
    spec = SimSpec(name="sim0")
    readings = run(make_device(), seconds=1800, step_s=5.0)

    assert max(reading.temperature_c for reading in readings) < spec.slowdown_temp_c
    assert not any(reading.clock_event_reasons & CLOCK_REASON_SW_THERMAL for reading in readings)
    # Steady state is ambient + R x the 700 W limit.
    assert readings[-1].temperature_c == pytest.approx(30.0 + 0.075 * 700.0, abs=1.0)


def test_throughput_and_temperature_noise_are_autocorrelated() -> None:
    device = make_device()
    run(device, seconds=300)
    readings = run(device, seconds=900)
    throughput = [reading.units_per_s for reading in readings]

    assert lag1_autocorrelation(throughput) > 0.5
    assert 0.003 < np.std(throughput) / np.mean(throughput) < 0.03
    assert lag1_autocorrelation([reading.temperature_c for reading in readings]) > 0.5


def test_device_memory_leak_grows_at_its_rate_and_is_freed_by_a_restart() -> None:
    leak = MemoryLeakFault(
        kind="memory_leak", device="sim0", target="device", rate_mib_per_hour=256, start=timedelta(minutes=10)
    )
    readings = run(make_device(faults=[leak]), seconds=7200, step_s=60.0)
    baseline_bytes = readings[0].memory_used_bytes

    assert at(readings, START_S + 600).memory_used_bytes == baseline_bytes
    growth_bytes = at(readings, START_S + 7200).memory_used_bytes - at(readings, START_S + 3600).memory_used_bytes
    assert growth_bytes == pytest.approx(256 * MIB, abs=1)
    assert readings[-1].host_leak_bytes == 0

    # Device memory a process leaked is freed when it exits; the new process leaks from zero.
    restarted = make_device(faults=[leak], start_s=START_S + 7200)
    restarted_growth_bytes = run(restarted, seconds=360)[-1].memory_used_bytes - baseline_bytes
    assert restarted_growth_bytes == pytest.approx(256 * MIB / 10, abs=1)


def test_host_memory_leak_is_reported_for_the_worker_not_the_device() -> None:
    leak = MemoryLeakFault(kind="memory_leak", device="sim0", target="host", rate_mib_per_hour=100)
    readings = run(make_device(faults=[leak]), seconds=3600, step_s=60.0)

    assert readings[-1].host_leak_bytes == pytest.approx(100 * MIB, abs=1)
    assert readings[-1].memory_used_bytes == readings[0].memory_used_bytes


def test_throughput_decay_removes_the_expected_fraction() -> None:
    decay = ThroughputDecayFault(
        kind="throughput_decay", device="sim0", rate_percent_per_hour=200, start=timedelta(minutes=5)
    )
    healthy = run(make_device(), seconds=2400, step_s=30.0)
    decaying = run(make_device(faults=[decay]), seconds=2400, step_s=30.0)

    def ratio(time_s: float) -> float:
        return at(decaying, time_s).units_per_s / at(healthy, time_s).units_per_s

    assert ratio(START_S + 300) == pytest.approx(1.0)
    # 200 %/h for 15 minutes takes half; after 30 minutes the floor of 5 % remains.
    assert ratio(START_S + 300 + 900) == pytest.approx(0.5)
    assert ratio(START_S + 2400) == pytest.approx(0.05)


def test_thermal_runaway_reaches_slowdown_and_cuts_throughput() -> None:
    spec = SimSpec(name="sim0")
    runaway = ThermalRunawayFault(
        kind="thermal_runaway", device="sim0", rate_c_per_minute=1.0, start=timedelta(minutes=5)
    )
    healthy = run(make_device(), seconds=2400, step_s=5.0)
    overheating = run(make_device(faults=[runaway]), seconds=2400, step_s=5.0)

    slowdown = next(r for r in overheating if r.clock_event_reasons & CLOCK_REASON_SW_THERMAL)
    assert slowdown.temperature_c > spec.slowdown_temp_c - 1.0
    throttled = at(overheating, slowdown.time_s + 300)
    assert throttled.units_per_s < 0.9 * at(healthy, throttled.time_s).units_per_s
    assert throttled.sm_clock_mhz < at(healthy, throttled.time_s).sm_clock_mhz - 100.0
    # With cooling still failing, hardware slowdown takes over and the device sits at its lowest clock.
    assert overheating[-1].clock_event_reasons & CLOCK_REASON_HW_THERMAL
    assert overheating[-1].sm_clock_mhz == pytest.approx(spec.idle_sm_clock_mhz, abs=5.0)
    assert max(reading.temperature_c for reading in overheating) < spec.shutdown_temp_c + 2.0


def test_driver_errors_arrive_at_about_their_rate_on_their_device_only() -> None:
    fault = DriverErrorFault(
        kind="driver_errors", device="sim1", xid=48, rate_per_hour=3600, start=timedelta(minutes=10)
    )
    readings = run(make_device("sim1", faults=[fault]), seconds=4200, step_s=10.0)
    events = [event for reading in readings for event in reading.driver_events]

    assert len(events) == pytest.approx(3600, abs=300)
    assert min(event.time_s for event in events) >= START_S + 600
    assert all(event.code == 48 for event in events)
    assert "NVRM: Xid (PCI:0000:11:00): 48," in events[0].raw
    assert events[0].raw.endswith("Double Bit ECC Error")
    for previous, reading in itertools.pairwise(readings):
        assert all(previous.time_s < event.time_s <= reading.time_s for event in reading.driver_events)

    other = run(make_device("sim2", faults=[fault]), seconds=4200, step_s=10.0)
    assert not any(reading.driver_events for reading in other)


@pytest.mark.parametrize(("xid", "message"), [(79, "GPU has fallen off the bus"), (43, "Unknown error")])
def test_driver_error_lines_carry_the_message_for_their_code(xid: int, message: str) -> None:
    fault = DriverErrorFault(kind="driver_errors", device="sim0", xid=xid, rate_per_hour=3600)
    events = [event for reading in run(make_device(faults=[fault]), seconds=60) for event in reading.driver_events]

    assert events
    assert all(event.raw.endswith(f": {xid}, pid='<unknown>', name=<unknown>, {message}") for event in events)


def test_restarted_worker_does_not_replay_driver_errors() -> None:
    fault = DriverErrorFault(kind="driver_errors", device="sim0", xid=79, rate_per_hour=360)
    original = run(make_device(faults=[fault]), seconds=3600, step_s=10.0)
    restarted = run(make_device(faults=[fault], start_s=START_S + 1800), seconds=1800, step_s=10.0)

    original_times = [event.time_s for reading in original for event in reading.driver_events]
    restarted_times = [event.time_s for reading in restarted for event in reading.driver_events]
    assert restarted_times
    assert restarted_times == [time_s for time_s in original_times if time_s > START_S + 1800]


def test_hang_stops_progress_until_the_worker_restarts_and_fires_once() -> None:
    hang = HangFault(kind="hang", device="sim0", start=timedelta(minutes=10))
    readings = run(make_device(faults=[hang]), seconds=1200, step_s=10.0)
    before = [reading for reading in readings if reading.time_s < START_S + 600]
    after = [reading for reading in readings if reading.time_s >= START_S + 600]

    assert all(not reading.hung and reading.units_per_s > 0 for reading in before)
    assert all(reading.hung and reading.units_per_s == 0.0 for reading in after)
    # A stuck kernel looks busy but draws little power.
    assert after[-1].utilization_ratio == 1.0
    assert after[-1].power_w < 150.0

    restarted_after = run(make_device(faults=[hang], start_s=START_S + 900), seconds=1800, step_s=10.0)
    assert not any(reading.hung for reading in restarted_after)
    restarted_before = run(make_device(faults=[hang], start_s=START_S + 300), seconds=600, step_s=10.0)
    assert restarted_before[-1].hung


def test_silent_data_corruption_is_counted_while_computing() -> None:
    sdc = SilentDataCorruptionFault(kind="sdc", device="sim0", rate_per_hour=120)
    loaded = run(make_device(faults=[sdc]), seconds=3600, step_s=10.0)
    idle = run(make_device(faults=[sdc]), seconds=3600, step_s=10.0, profile=None, duty_cycle=0.0)
    other = run(make_device("sim1", faults=[sdc]), seconds=3600, step_s=10.0)

    assert sum(reading.sdc_events for reading in loaded) == pytest.approx(120, abs=40)
    assert sum(reading.sdc_events for reading in idle) == 0
    assert sum(reading.sdc_events for reading in other) == 0


def test_duty_cycle_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="duty_cycle"):
        make_device().advance(START_S + 1, GEMM, 1.5)

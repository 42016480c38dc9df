"""The fleet simulator: reproducible, faithful to its ground truth, healthy where it says so, and drawn at the
published fault shares."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from soak.analysis.series import Series
from soak.analysis.sim import FleetSpec, SimulatedDevice, plan_fleet, simulate_device, simulate_fleet, taxonomy
from soak.analysis.sim.schedule import PlannedFault, draw_fault, plan_faults

SMALL = FleetSpec(seed=7, devices=4, devices_per_node=2, days=2.0)
HOUR_S = 3600.0
GIB = 2.0**30


def with_fault(
    spec: FleetSpec, fault_class: str, variant: str, params: dict[str, float | int | str], **where: object
) -> list[SimulatedDevice]:
    """The spec's fleet with exactly one planned fault, on the first device (or first node)."""
    plan = plan_fleet(spec)
    onset_s = spec.start_s + spec.duration_s / 2
    node = where.get("node")
    devices = tuple(spec.device_name(i) for i in spec.devices_of_node(0)) if node else (spec.device_name(0),)
    fault = PlannedFault("t-f00", fault_class, variant, spec.node_name(0) if node else None, devices, onset_s, params)
    plan = dataclasses.replace(plan, faults=[fault])
    return [simulate_device(plan, index) for index in range(spec.devices)]


def slope_per_hour(series: Series, start_s: float, end_s: float) -> float:
    keep = (series.time_s >= start_s) & (series.time_s < end_s)
    return float(np.polyfit((series.time_s[keep] - start_s) / HOUR_S, series.values[keep], 1)[0])


def test_same_seed_gives_the_same_fleet_and_another_seed_a_different_one() -> None:
    first, second = list(simulate_fleet(SMALL)), list(simulate_fleet(SMALL))
    other = list(simulate_fleet(dataclasses.replace(SMALL, seed=8)))
    for a, b in zip(first, second, strict=True):
        assert a.faults == b.faults
        assert a.telemetry.events == b.telemetry.events
        assert a.telemetry.series.keys() == b.telemetry.series.keys()
        for name, series in a.telemetry.series.items():
            np.testing.assert_array_equal(series.time_s, b.telemetry.series[name].time_s)
            np.testing.assert_array_equal(series.values, b.telemetry.series[name].values)
    throughput = "throughput.train"
    assert not np.array_equal(
        first[0].telemetry.metric(throughput).values, other[0].telemetry.metric(throughput).values
    )


def test_a_small_fleet_has_every_device_with_a_full_campaign_of_samples() -> None:
    devices = list(simulate_fleet(SMALL))
    assert [device.telemetry.device for device in devices] == [
        "node-00-gpu0",
        "node-00-gpu1",
        "node-01-gpu0",
        "node-01-gpu1",
    ]
    samples = int(SMALL.duration_s / SMALL.sample_interval_s)
    healthy = [device for device in devices if not device.faults]
    assert healthy
    for device in healthy:
        assert len(device.telemetry.metric("device.temperature_c")) == samples
        assert device.telemetry.model == "NVIDIA H100 80GB HBM3"


def test_series_of_a_device_share_one_read_only_clock() -> None:
    telemetry = next(iter(simulate_fleet(SMALL))).telemetry
    clocks = {
        id(series.time_s.base if series.time_s.base is not None else series.time_s)
        for series in telemetry.series.values()
    }
    assert len(clocks) <= 3  # one per liveness: device, worker process, worker progress
    assert not telemetry.metric("device.power_w").time_s.flags.writeable


def test_healthy_devices_have_no_fault_and_nothing_alarming_happens_to_them() -> None:
    spec = FleetSpec(seed=11, devices=16, days=3.0)
    plan = plan_fleet(spec)
    assert plan.healthy_devices
    for name in plan.healthy_devices:
        device = simulate_device(plan, [spec.device_name(i) for i in range(spec.devices)].index(name))
        telemetry = device.telemetry
        assert device.faults == ()
        assert {event.kind for event in telemetry.events} <= {"driver_error"}
        assert {event.severity for event in telemetry.events} <= {"info", "warning"}
        assert len(telemetry.metric("throughput.train")) == spec.samples
        assert telemetry.metric("device.temperature_c").values.max() < 80.0
        assert telemetry.metric("device.ecc_uncorrected_volatile_errors").values.max() == 0
        allocated = telemetry.metric("worker.memory_allocated_bytes")
        assert abs(slope_per_hour(allocated, spec.start_s, spec.end_s)) < 0.0005 * 80 * GIB


def test_a_device_memory_leak_is_flat_before_its_onset_and_grows_at_its_rate_after() -> None:
    spec = dataclasses.replace(SMALL, days=4.0)
    leaking = with_fault(spec, taxonomy.DEVICE_MEMORY_LEAK, "allocated_grows", {"rate_percent_per_hour": 1.0})[0]
    (truth,) = leaking.faults
    onset_s = truth.expected["memory_leak"]
    allocated = leaking.telemetry.metric("worker.memory_allocated_bytes")
    rate_bytes_per_hour = 0.01 * 80 * GIB
    assert abs(slope_per_hour(allocated, onset_s - 12 * HOUR_S, onset_s)) < 0.03 * rate_bytes_per_hour
    assert slope_per_hour(allocated, onset_s, onset_s + 3 * HOUR_S) == pytest.approx(rate_bytes_per_hour, rel=0.05)
    used = leaking.telemetry.metric("device.memory_used_bytes")
    assert used.values.max() <= 80 * GIB  # the worker runs out of memory and restarts instead of overflowing
    assert any(event.kind == "worker_died" and "OutOfMemory" in event.message for event in leaking.telemetry.events)


def test_an_rss_leak_rides_on_the_garbage_collection_sawtooth_from_its_onset() -> None:
    leaking = with_fault(SMALL, taxonomy.RSS_LEAK, "rss_grows", {"rate_mb_per_hour": 200.0})[0]
    onset_s = leaking.faults[0].onset_s
    rss = leaking.telemetry.metric("process.rss_bytes")
    before = slope_per_hour(rss, onset_s - 12 * HOUR_S, onset_s)
    after = slope_per_hour(rss, onset_s, onset_s + 12 * HOUR_S)
    assert abs(before) < 10e6
    assert after == pytest.approx(200e6, abs=20e6)


def test_a_throughput_step_drops_by_its_size_at_its_onset() -> None:
    dropped = with_fault(SMALL, taxonomy.THROUGHPUT_STEP, "step", {"drop": 0.05})[0]
    onset_s = dropped.faults[0].expected["throughput_drift"]
    throughput = dropped.telemetry.metric("throughput.train")
    before = throughput.values[(throughput.time_s >= onset_s - HOUR_S) & (throughput.time_s < onset_s)].mean()
    after = throughput.values[(throughput.time_s >= onset_s) & (throughput.time_s < onset_s + HOUR_S)].mean()
    assert after / before == pytest.approx(0.95, abs=0.01)


def test_a_thermal_interface_fault_climbs_to_slowdown_and_throttles_only_after_its_truth_says() -> None:
    spec = dataclasses.replace(SMALL, days=4.0)
    hot = with_fault(spec, taxonomy.THERMAL_INTERFACE, "interface_degrades", {"climb_hours": 12.0, "excess_c": 8.0})[0]
    (truth,) = hot.faults
    reasons = hot.telemetry.metric("device.clock_event_reasons")
    thermal = (reasons.values.astype(np.int64) & 0x20) != 0
    assert not thermal[reasons.time_s < truth.expected["throttling"]].any()
    assert thermal[reasons.time_s >= truth.expected["throttling"]].mean() > 0.9
    temperature = hot.telemetry.metric("device.temperature_c")
    assert temperature.values[temperature.time_s < truth.onset_s].max() < 80.0
    assert temperature.values.max() >= 87.0
    assert truth.expected["thermal_margin"] == truth.onset_s < truth.expected["throttling"]


def test_a_lost_node_silences_all_its_devices_at_once_and_no_other() -> None:
    gap_s = 2 * HOUR_S
    devices = with_fault(SMALL, taxonomy.HOST_MAINTENANCE, "reboot", {"gap_s": gap_s, "returns": 1}, node=True)
    onset_s = devices[0].faults[0].onset_s
    for device in devices:
        power = device.telemetry.metric("device.power_w")
        in_gap = ((power.time_s >= onset_s) & (power.time_s < onset_s + gap_s)).sum()
        kinds = [event.kind for event in device.telemetry.events]
        if device.telemetry.node == "node-00":
            assert in_gap == 0
            assert kinds.count("node_lost") == 1 and kinds.count("node_returned") == 1
            assert device.faults[0].expected == {"node_lost": onset_s}
        else:
            assert in_gap == gap_s / SMALL.sample_interval_s
            assert "node_lost" not in kinds and device.faults == ()


def test_a_fail_class_xid_is_an_event_at_the_truths_onset() -> None:
    broken = with_fault(SMALL, taxonomy.FAULTY_GPU, "fell_off_bus", {"xid": 79, "reset_s": 300.0})[0]
    (truth,) = broken.faults
    (xid,) = [event for event in broken.telemetry.events if event.kind == "driver_error"]
    assert (xid.code, xid.severity, xid.time_s) == (79, "critical", truth.expected["driver_error"])
    assert broken.telemetry.metric("device.power_w").time_s[-1] < truth.onset_s  # its telemetry stops


def test_interruption_causes_are_drawn_at_the_llama3_shares() -> None:
    rng = np.random.default_rng(0)
    draws = 20_000
    drawn = [taxonomy.draw_interruption(rng) for _ in range(draws)]
    total_percent = sum(taxonomy.LLAMA3_INTERRUPTION_PERCENT.values())
    for cause, percent in taxonomy.LLAMA3_INTERRUPTION_PERCENT.items():
        share = percent / total_percent
        assert drawn.count(cause) / draws == pytest.approx(share, abs=4 * math.sqrt(share * (1 - share) / draws))
    faulty_gpu, hbm3 = drawn.count(taxonomy.FAULTY_GPU), drawn.count(taxonomy.HBM3_MEMORY)
    assert faulty_gpu / hbm3 == pytest.approx(30.1 / 17.2, rel=0.08)


def test_a_quarter_to_a_third_of_the_fleet_gets_a_fault() -> None:
    spec = FleetSpec()
    shares = []
    for seed in range(40):
        faults = plan_faults(dataclasses.replace(spec, seed=seed), np.random.default_rng(seed))
        devices = [device for fault in faults for device in fault.devices]
        assert len(devices) == len(set(devices))  # at most one fault per device
        shares.append(len(devices) / spec.devices)
    assert min(shares) >= 0.25 and max(shares) <= 0.35 + 7 / spec.devices
    assert np.mean(shares) == pytest.approx(0.30, abs=0.03)


def test_a_fleet_can_be_limited_to_chosen_fault_classes() -> None:
    spec = FleetSpec(seed=1, only_classes=(taxonomy.THERMAL_INTERFACE, taxonomy.SDC))
    classes = {fault.fault_class for fault in plan_fleet(spec).faults}
    assert classes == {taxonomy.THERMAL_INTERFACE, taxonomy.SDC}
    with pytest.raises(ValueError, match="unknown fault classes \\['overheating'\\]"):
        FleetSpec(only_classes=("overheating",))


@pytest.mark.parametrize(
    "fault_class",
    sorted(taxonomy.FAULT_CLASSES),
)
def test_every_fault_class_has_an_observable_effect_and_a_described_truth(fault_class: str) -> None:
    rng = np.random.default_rng(3)
    variant, params, whole_node = draw_fault(fault_class, rng)
    plan = plan_fleet(SMALL)
    devices = tuple(SMALL.device_name(i) for i in SMALL.devices_of_node(0)) if whole_node else (SMALL.device_name(0),)
    onset_s = SMALL.start_s + SMALL.duration_s / 2
    fault = PlannedFault(
        "t-f00", fault_class, variant, SMALL.node_name(0) if whole_node else None, devices, onset_s, params
    )
    faulty = simulate_device(dataclasses.replace(plan, faults=[fault]), 0)
    healthy = simulate_device(dataclasses.replace(plan, faults=[]), 0)
    (truth,) = faulty.faults
    assert truth.description and truth.fault_class == fault_class
    assert all(onset_s <= kind_onset_s < SMALL.end_s for kind_onset_s in truth.expected.values())
    changed = faulty.telemetry.events != healthy.telemetry.events or any(
        len(series) != len(healthy.telemetry.metric(name))
        or not np.array_equal(series.values, healthy.telemetry.metric(name).values)
        for name, series in faulty.telemetry.series.items()
    )
    assert changed

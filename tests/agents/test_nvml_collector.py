"""The NVML collector against a fake NVML answering as a real, idle H200 (tests/fixtures/nvidia-h200)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents.collectors.base import CollectContext, Collected
from agents.collectors.nvml import NvmlCollector
from agents.config import AgentSettings
from agents.nvml.provider import (
    ERROR_GPU_IS_LOST,
    ERROR_LIBRARY_NOT_FOUND,
    ERROR_UNKNOWN,
    Nvml,
    NvmlError,
    PynvmlProvider,
)
from agents.nvml.recorded import RecordedNvml, load_recorded_readings

H200 = Path(__file__).parent.parent / "fixtures" / "nvidia-h200"
CONTEXT = CollectContext(worker_pids={})
T0 = 1_795_900_000.0


@pytest.fixture
def settings() -> AgentSettings:
    return AgentSettings(node_name="gpu-07", cpu_device=False)


@pytest.fixture
def nvml() -> RecordedNvml:
    return RecordedNvml.from_fixture(H200)


CollectorOf = Callable[..., NvmlCollector]


@pytest.fixture
def collector_of(settings: AgentSettings) -> Iterator[CollectorOf]:
    """Collectors on `settings`, closed (listener thread stopped) after the test."""
    made: list[NvmlCollector] = []

    def make(provider: Nvml | None = None, **options: float) -> NvmlCollector:
        made.append(NvmlCollector(settings, provider, **options))
        return made[-1]

    yield make
    for collector in made:
        collector.close()


def values(collected: Collected, device: str = "gpu-07/cuda0") -> dict[str, float]:
    return {sample["metric"]: sample["value"] for sample in collected.samples if sample["device"] == device}


def test_the_h200_registers_with_its_identity(collector_of: CollectorOf, nvml: RecordedNvml) -> None:
    [device] = collector_of(nvml).devices()
    assert device.name == "gpu-07/cuda0"
    assert (device.backend, device.vendor, device.index) == ("cuda", "nvidia", 0)
    assert device.model == "NVIDIA H200"
    assert device.uuid == "GPU-0bae265c-555b-5a0c-03c7-8551e62ae474"
    assert device.serial == "1652826071622"
    assert device.bus_id == "00000000:00:06.0"
    assert device.driver_version == "580.159.04"
    assert device.firmware_version == "96.00.A5.00.1A"
    assert device.memory_total_bytes == 150_754_820_096


def test_the_first_cycle_reports_what_the_h200_recorded(collector_of: CollectorOf, nvml: RecordedNvml) -> None:
    collected = collector_of(nvml).collect(T0, CONTEXT)
    seen = values(collected)
    assert seen["device.temperature_c"] == 36
    assert seen["device.memory_temperature_c"] == 40
    assert seen["device.temperature_slowdown_c"] == 89
    assert seen["device.temperature_shutdown_c"] == 95
    assert seen["device.power_w"] == pytest.approx(106.971)
    assert seen["device.power_limit_w"] == 700
    assert seen["device.energy_j"] == pytest.approx(2384.322)
    assert (seen["device.sm_clock_mhz"], seen["device.mem_clock_mhz"]) == (345, 3201)
    assert (seen["device.sm_clock_max_mhz"], seen["device.mem_clock_max_mhz"]) == (1980, 3201)
    assert seen["device.utilization_ratio"] == 0
    assert seen["device.memory_utilization_ratio"] == 0
    assert seen["device.memory_used_bytes"] == 644_939_776
    assert seen["device.memory_total_bytes"] == 150_754_820_096
    assert seen["device.pstate"] == 0
    assert (seen["device.violation_power_s"], seen["device.violation_thermal_s"]) == (0, 0)
    assert seen["device.ecc_enabled"] == 1
    assert seen["device.ecc_corrected_volatile_errors"] == 0
    assert seen["device.ecc_uncorrected_volatile_errors"] == 0
    assert seen["device.ecc_corrected_aggregate_errors"] == 0
    assert seen["device.ecc_uncorrected_aggregate_errors"] == 0
    for kind in ("correctable", "uncorrectable", "pending", "failure"):
        assert seen[f"device.remapped_rows_{kind}"] == 0
    assert seen["device.pcie_replays"] == 1
    assert (seen["device.pcie_link_gen"], seen["device.pcie_link_gen_max"]) == (5, 5)
    assert (seen["device.pcie_link_width"], seen["device.pcie_link_width_max"]) == (16, 16)
    assert all(sample["time_s"] == T0 for sample in collected.samples)
    assert collected.events == []


def test_clock_event_reasons_come_raw_and_as_one_flag_each(collector_of: CollectorOf, nvml: RecordedNvml) -> None:
    collector = collector_of(nvml)
    idle = values(collector.collect(T0, CONTEXT))
    assert idle["device.clock_event_reasons"] == 1
    assert idle["device.clock_event.gpu_idle"] == 1
    assert idle["device.clock_event.sw_power_cap"] == 0
    nvml.set(0, "throttle_reasons", 0x4 | 0x40)  # power-capped and hot, as under a sustained GEMM
    busy = values(collector.collect(T0 + 1, CONTEXT))
    assert busy["device.clock_event_reasons"] == 0x44
    prefix = "device.clock_event."
    flags = {metric.removeprefix(prefix): value for metric, value in busy.items() if metric.startswith(prefix)}
    assert {name for name, on in flags.items() if on} == {"sw_power_cap", "hw_thermal_slowdown"}
    assert len(flags) == 9


def test_unsupported_readings_give_no_sample_and_are_not_asked_again(
    collector_of: CollectorOf, nvml: RecordedNvml
) -> None:
    collector = collector_of(nvml, slow_interval_s=30)
    for cycle in range(3):
        seen = values(collector.collect(T0 + cycle * 30, CONTEXT))
        assert "device.fan_speed_ratio" not in seen
        assert "device.nvlink_active_links" not in seen
        assert not any(metric.startswith("device.retired_pages") for metric in seen)
        assert seen["device.temperature_c"] == 36
    assert nvml.calls["fan"] == 1
    assert nvml.calls["nvlink0_state"] == 1
    assert nvml.calls["retired_pages_dbe"] == 1
    assert nvml.calls["temp_gpu"] == 3


def test_an_unexpected_error_loses_only_that_reading(
    collector_of: CollectorOf, nvml: RecordedNvml, caplog: pytest.LogCaptureFixture
) -> None:
    collector = collector_of(nvml)
    nvml.fail(0, "temp_gpu", ERROR_UNKNOWN)
    nvml.fail(0, "temp_mem_hbm_field", ERROR_GPU_IS_LOST)
    with caplog.at_level(logging.WARNING, logger="agents.collectors.nvml"):
        failing = values(collector.collect(T0, CONTEXT))
        values(collector.collect(T0 + 1, CONTEXT))
    assert "device.temperature_c" not in failing
    assert "device.memory_temperature_c" not in failing
    assert failing["device.power_w"] == pytest.approx(106.971)
    assert failing["device.energy_j"] == pytest.approx(2384.322)
    assert failing["device.remapped_rows_pending"] == 0
    assert len([record for record in caplog.records if "temperature" in record.getMessage()]) == 1
    assert len([record for record in caplog.records if "field 82" in record.getMessage()]) == 1
    nvml.set(0, "temp_gpu", 41)
    nvml.set(0, "temp_mem_hbm_field", 44)
    recovered = values(collector.collect(T0 + 2, CONTEXT))
    assert (recovered["device.temperature_c"], recovered["device.memory_temperature_c"]) == (41, 44)


def test_slow_counters_are_read_once_per_slow_interval(collector_of: CollectorOf, nvml: RecordedNvml) -> None:
    collector = collector_of(nvml, slow_interval_s=30)
    cycles = [values(collector.collect(T0 + offset, CONTEXT)) for offset in (0, 1, 10, 29.5)]
    assert nvml.calls["temp_gpu"] == 4
    assert nvml.calls["temp_threshold_slowdown"] == 1
    assert nvml.calls["pcie_replay"] == 1
    assert nvml.calls["ecc_vol_uncorr"] == 1
    assert ["device.remapped_rows_pending" in seen for seen in cycles] == [True, False, False, False]
    values(collector.collect(T0 + 30, CONTEXT))
    assert nvml.calls["temp_threshold_slowdown"] == 2
    assert nvml.calls["pcie_replay"] == 2


def test_a_downgraded_link_on_a_busy_gpu_is_reported_once_and_its_recovery_too(
    collector_of: CollectorOf, nvml: RecordedNvml
) -> None:
    collector = collector_of(nvml, slow_interval_s=30)
    assert collector.collect(T0, CONTEXT).events == []
    nvml.set(0, "throttle_reasons", 0x4)
    nvml.set(0, "pcie_link_gen", 3)
    nvml.set(0, "pcie_link_width", 8)
    [degraded] = collector.collect(T0 + 30, CONTEXT).events
    assert degraded["kind"] == "pcie_link_degraded"
    assert degraded["severity"] == "warning"
    assert degraded["device"] == "gpu-07/cuda0"
    assert "gen 3 x8" in degraded["message"] and "gen 5 x16" in degraded["message"]
    assert collector.collect(T0 + 60, CONTEXT).events == []
    assert collector.collect(T0 + 61, CONTEXT).events == []
    nvml.set(0, "pcie_link_gen", 5)
    nvml.set(0, "pcie_link_width", 16)
    [restored] = collector.collect(T0 + 90, CONTEXT).events
    assert (restored["kind"], restored["severity"]) == ("pcie_link_restored", "info")


def test_an_idle_gpu_may_lower_its_link_generation(collector_of: CollectorOf, nvml: RecordedNvml) -> None:
    nvml.set(0, "pcie_link_gen", 1)  # the recorded H200 is idle (clock event reason gpu_idle)
    collected = collector_of(nvml).collect(T0, CONTEXT)
    assert collected.events == []
    assert values(collected)["device.pcie_link_gen"] == 1


def test_several_gpus_are_named_by_index(collector_of: CollectorOf) -> None:
    first = load_recorded_readings(H200)
    second = {**first, "uuid": "GPU-second", "pci_bus_id": "00000000:00:07.0", "temp_gpu": 52}
    collector = collector_of(RecordedNvml([first, second]))
    assert [device.name for device in collector.devices()] == ["gpu-07/cuda0", "gpu-07/cuda1"]
    assert collector.bus_ids() == {"00000000:00:06.0": "gpu-07/cuda0", "00000000:00:07.0": "gpu-07/cuda1"}
    collected = collector.collect(T0, CONTEXT)
    assert values(collected, "gpu-07/cuda1")["device.temperature_c"] == 52
    assert values(collected, "gpu-07/cuda0")["device.temperature_c"] == 36


@pytest.mark.parametrize(
    "nvml",
    [RecordedNvml([], init_error=NvmlError(ERROR_LIBRARY_NOT_FOUND, "no libnvidia-ml.so")), RecordedNvml([])],
    ids=["no-library", "no-gpu"],
)
def test_without_nvml_or_a_gpu_there_are_no_devices_and_no_data(collector_of: CollectorOf, nvml: RecordedNvml) -> None:
    collector = collector_of(nvml)
    assert collector.devices() == []
    collected = collector.collect(T0, CONTEXT)
    assert (collected.samples, collected.events) == ([], [])


def test_the_real_library_on_a_machine_without_a_driver_gives_no_data(collector_of: CollectorOf) -> None:
    provider = PynvmlProvider()
    try:
        provider.init()
    except NvmlError:
        collector = collector_of()
        assert collector.devices() == []
        assert collector.collect(T0, CONTEXT).samples == []
    else:
        provider.shutdown()
        pytest.skip("this machine has an NVIDIA driver; the GPU test covers it")


def _nvml_works() -> bool:
    provider = PynvmlProvider()
    try:
        provider.init()
        count = provider.device_count()
        provider.shutdown()
    except NvmlError:
        return False
    return count > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _nvml_works(), reason="needs an NVIDIA GPU and driver")
def test_a_real_gpu_through_the_real_library(collector_of: CollectorOf) -> None:
    collector = collector_of()
    devices = collector.devices()
    assert devices and devices[0].uuid and devices[0].uuid.startswith("GPU-")
    assert devices[0].memory_total_bytes and devices[0].memory_total_bytes > 1 << 30
    first = values(collector.collect(T0, CONTEXT))
    second = values(collector.collect(T0 + 1, CONTEXT))
    assert 0 < first["device.temperature_c"] < 110
    assert first["device.power_limit_w"] > 0
    assert second["device.energy_j"] >= first["device.energy_j"] > 0
    assert "device.pcie_link_gen_max" in first and "device.pcie_link_gen_max" not in second
    mask = int(first["device.clock_event_reasons"])
    assert first["device.clock_event.gpu_idle"] == mask & 1

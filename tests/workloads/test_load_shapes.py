"""The membw, h2d, idle and power_cycle workloads on the CPU with real torch and on a simulated device."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch

from soak.plan import PlanError, WorkloadSpec, parse_plan
from soak.workloads.backends import CpuDevice, OpenDevice
from soak.workloads.base import IntervalResult, Workload
from soak.workloads.gemm import Gemm
from soak.workloads.h2d import HostDeviceTransfer
from soak.workloads.membw import SAMPLE_ELEMENTS, MemoryBandwidth
from soak.workloads.power_cycle import PowerCycle
from soak.workloads.precision import UnsupportedPrecision
from soak.workloads.registry import load_workload

W = TypeVar("W", bound=Workload)

CPU = torch.device("cpu")
INTERVAL_S = 0.2
NAMES = ["membw", "h2d", "idle", "power_cycle"]
LOADED = ["membw", "h2d", "power_cycle"]
SMALL: dict[str, dict[str, Any]] = {
    "membw": {"buffer_mib": 1},
    "h2d": {"transfer_mib": 1},
    "idle": {},
    "power_cycle": {"size": 32, "period_s": 0.2},
}


def spec(name: str, **fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": name, "params": SMALL[name], **fields})


def prepared(kind: type[W], **fields: Any) -> W:
    workload = kind(spec(kind.name, **fields))
    workload.prepare(CPU)
    return workload


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the CPU backend runs its workers (and so the test leaves the machine usable)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_on_cpu(workload: Workload, seconds: float = INTERVAL_S) -> IntervalResult:
    """Prepare and one sample interval through the CPU backend, as a worker runs them."""
    device = CpuDevice()
    device.prepare(workload)
    return device.run_interval(workload, end_s=time.time() + seconds)


@pytest.mark.parametrize("name", LOADED)
def test_a_load_runs_measures_and_verifies_on_the_cpu(name: str) -> None:
    workload = load_workload(name)(spec(name))
    device = CpuDevice()
    device.prepare(workload)

    result = device.run_interval(workload, end_s=time.time() + INTERVAL_S)

    assert result.steps > 0
    assert result.work_units > 0 and result.units_per_s > 0
    assert result.errors == [] and result.sdc_mismatches == 0
    assert workload.verify()
    device.teardown(workload)


def test_idle_does_no_work_and_leaves_the_device_alone() -> None:
    result = run_on_cpu(load_workload("idle")(spec("idle")))

    assert result.steps > 0
    assert result.work_units == 0 and result.units_per_s == 0
    assert result.errors == [] and result.sdc_mismatches == 0
    # Thread CPU time is the CPU device's own time: sleeping spends next to none of it.
    assert result.device_s < 0.25 * (result.end_s - result.start_s)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_membw_moves_and_verifies_each_allowed_precision(precision: str) -> None:
    membw = prepared(MemoryBandwidth, precision=precision)

    assert membw.step() == pytest.approx(5 * 2**20 / 1e9)
    assert membw.verify()


@pytest.mark.parametrize("precision", ["fp64", "tf32", "fp8", "int8"])
def test_membw_refuses_other_precisions_at_prepare(precision: str) -> None:
    membw = MemoryBandwidth(spec("membw", precision=precision))

    with pytest.raises(UnsupportedPrecision, match=f"membw moves fp32, bf16 or fp16 data, not {precision}"):
        membw.prepare(CPU)


@pytest.mark.parametrize("buffer", ["_dst", "_triad"])
def test_one_flipped_bit_in_membw_output_fails_verification(buffer: str) -> None:
    membw = prepared(MemoryBandwidth)
    membw.step()
    assert membw.verify()

    # The lowest mantissa bit: a wrong value that any tolerance-based comparison would accept.
    getattr(membw, buffer).view(torch.int32)[1234] ^= 1

    assert not membw.verify()


def test_a_corrupted_membw_source_fails_verification_after_the_next_copy() -> None:
    membw = prepared(MemoryBandwidth)
    membw._src.view(torch.int32)[77] ^= 1 << 20

    membw.step()

    assert not membw.verify()


def test_successive_membw_verifications_cover_the_whole_buffer() -> None:
    membw = prepared(MemoryBandwidth, params={"buffer_mib": 8})
    assert membw._dst.numel() == 2 * SAMPLE_ELEMENTS  # two verifications to see every element
    membw.step()

    membw._dst.view(torch.int32)[1] ^= 1

    assert [membw.verify(), membw.verify(), membw.verify()] == [True, False, True]


def test_h2d_counts_both_directions_and_one_corrupted_byte_fails_verification() -> None:
    h2d = HostDeviceTransfer(spec("h2d"))
    h2d.prepare(CPU)

    assert h2d.step() == pytest.approx(2 * 2**20 / 1e9)
    assert h2d.verify()

    h2d._host_back[4321] ^= 0x10

    assert not h2d.verify()


@pytest.mark.parametrize("high_fraction", [0.25, 0.75])
def test_power_cycle_is_busy_for_its_high_fraction_of_a_period(high_fraction: float) -> None:
    period_s = 0.4
    cycle = PowerCycle(spec("power_cycle", params={"size": 32, "period_s": period_s, "high_fraction": high_fraction}))
    # The same GEMM without the wave: the CPU time this thread gets for one period on a possibly busy host.
    always_busy = run_on_cpu(Gemm(WorkloadSpec.model_validate({"name": "gemm", "params": {"size": 32}})), period_s)

    # Any window one period long holds exactly one high part, wherever the wave's phase starts.
    result = run_on_cpu(cycle, period_s)

    assert result.work_units > 0 and result.errors == []
    # Contention can only take CPU time away, so the bound above holds on any host; the one below is relative.
    assert result.device_s < (high_fraction + 0.2) * period_s
    assert result.device_s > 0.5 * high_fraction * always_busy.device_s


def test_power_cycle_results_are_checked_like_gemm() -> None:
    cycle = prepared(PowerCycle)
    assert cycle.verify()

    cycle._gemm._c[3, 5] += 1e-3

    assert not cycle.verify()


@pytest.mark.parametrize(
    ("name", "params", "problem"),
    [
        ("membw", {"buffer_mib": 0}, "workloads[0].params.buffer_mib: Input should be greater than or equal to 1"),
        ("h2d", {"transfer_mib": 0}, "workloads[0].params.transfer_mib: Input should be greater than or equal to 1"),
        (
            "idle",
            {"seconds": 5},
            "workloads[0].params.seconds: unknown field; check its spelling against the plan reference",
        ),
        ("power_cycle", {"period_s": 0}, "workloads[0].params.period_s: Input should be greater than or equal to 0.1"),
        ("power_cycle", {"high_fraction": 1}, "workloads[0].params.high_fraction: Input should be less than 1"),
        ("power_cycle", {"size": 8}, "workloads[0].params.size: Input should be greater than or equal to 16"),
    ],
)
def test_the_plan_rejects_bad_params_naming_the_field(name: str, params: dict[str, Any], problem: str) -> None:
    plan = {
        "name": "bad",
        "duration": "1h",
        "devices": {"simulated": 1},
        "workloads": [{"name": name, "params": params}],
    }

    with pytest.raises(PlanError) as error:
        parse_plan(plan)

    assert problem in error.value.problems


@pytest.mark.parametrize("name", NAMES)
def test_each_workload_loads_a_simulated_device(name: str, simulated_device: OpenDevice, tmp_path: Path) -> None:
    device = simulated_device
    workload = load_workload(name)(spec(name))
    device.prepare(workload)

    result = device.run_interval(workload, end_s=time.time() + INTERVAL_S)
    device.teardown(workload)

    assert result.errors == [] and result.sdc_mismatches == 0
    if name == "idle":
        assert result.work_units == 0
    else:
        assert result.work_units > 0
    assert (tmp_path / "sim0.json").is_file()

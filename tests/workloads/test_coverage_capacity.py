"""The op_coverage and capacity workloads on the CPU with real torch: what they report, and that they clean up."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import torch
from pydantic import ValidationError

from soak.plan import WorkloadSpec
from soak.workloads.backends import CpuDevice
from soak.workloads.base import IntervalResult, Workload, WorkloadEvent
from soak.workloads.capacity import GIB, Capacity, largest_allocation_bytes
from soak.workloads.op_coverage import (
    CATALOGUE,
    COMPILE_OP,
    OpCoverage,
    OpResult,
    OpStatus,
    Outcome,
    probe_op,
    to_report,
)

CPU = torch.device("cpu")
INTERVAL_S = 0.2
PROBE_GIB = 0.25
# Ops every CPU build of torch runs itself; the others depend on the CPU and the build.
CPU_NATIVE = (
    "sdpa",
    "sdpa with boolean mask",
    "sdpa causal",
    "sdpa math backend",
    "rms_norm",
    "layer_norm",
    "gelu tanh",
    "silu",
    "swiglu block",
    "rotary embedding",
    "int8 matmul (_int_mm)",
)
# Host memory the capacity probes may leave resident, against the 0.25 GiB they write: allocator slack only.
RSS_MARGIN_BYTES = 64 << 20


def spec(name: str, params: dict[str, Any], **fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": name, "params": params, **fields})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the CPU backend runs its workers (and so the tests leave the machine usable)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_slot(workload: Workload) -> IntervalResult:
    """prepare, one sample interval and teardown through the CPU backend, as a worker runs a slot."""
    device = CpuDevice()
    device.prepare(workload)
    try:
        return device.run_interval(workload, end_s=time.time() + INTERVAL_S)
    finally:
        device.teardown(workload)


@pytest.fixture(scope="module")
def coverage_slot() -> tuple[OpCoverage, IntervalResult]:
    """One op_coverage slot on the CPU without torch.compile (that check has its own test)."""
    workload = OpCoverage(spec("op_coverage", {"compile": False}))
    return workload, run_slot(workload)


def by_op(results: list[OpResult]) -> dict[str, OpResult]:
    return {result.op: result for result in results}


def test_op_coverage_reports_each_catalogue_entry_exactly_once(
    coverage_slot: tuple[OpCoverage, IntervalResult],
) -> None:
    workload, _ = coverage_slot

    ops = [result.op for result in workload.results()]

    assert sorted(ops) == sorted(op for op, _ in CATALOGUE)
    assert COMPILE_OP not in ops


def test_standard_ops_run_natively_on_the_cpu(coverage_slot: tuple[OpCoverage, IntervalResult]) -> None:
    results = by_op(coverage_slot[0].results())

    not_native = {op: results[op].message for op in CPU_NATIVE if results[op].status is not OpStatus.NATIVE}

    assert not_native == {}


def test_fp8_and_missing_attention_kernels_are_unsupported_with_a_reason(
    coverage_slot: tuple[OpCoverage, IntervalResult],
) -> None:
    results = by_op(coverage_slot[0].results())

    fp8 = results["fp8 matmul (_scaled_mm)"]
    efficient = results["sdpa memory-efficient backend"]

    assert fp8.status is OpStatus.UNSUPPORTED
    assert "FP8" in fp8.detail
    # torch has no memory-efficient attention kernel for the CPU: forcing it leaves no backend at all.
    assert efficient.status is OpStatus.UNSUPPORTED
    assert "No viable backend" in efficient.detail


def test_op_coverage_events_travel_with_the_interval_result(coverage_slot: tuple[OpCoverage, IntervalResult]) -> None:
    workload, result = coverage_slot
    results = workload.results()

    assert result.errors == []
    assert len(result.events) == len(results)
    for event, op_result in zip(result.events, results, strict=True):
        assert event.kind == "op_coverage"
        assert event.message.startswith(f"{op_result.op}: {op_result.status.value}")
        assert event.severity == ("info" if op_result.status is OpStatus.NATIVE else "warning")
        if op_result.status is not OpStatus.NATIVE:
            assert event.raw


def test_op_coverage_reports_no_throughput_and_idles_after_the_catalogue(
    coverage_slot: tuple[OpCoverage, IntervalResult],
) -> None:
    workload, result = coverage_slot

    assert not workload.reports_throughput
    assert result.steps > 0
    assert result.work_units == 0.0


def run_until_compiled(workload: OpCoverage) -> list[WorkloadEvent]:
    """A slot that lasts until the torch.compile verdict is in; the workload's own timeout bounds it."""
    device = CpuDevice()
    device.prepare(workload)
    events: list[WorkloadEvent] = []
    try:
        while COMPILE_OP not in by_op(workload.results()):
            events += device.run_interval(workload, end_s=time.time() + INTERVAL_S).events
    finally:
        device.teardown(workload)
    return events


def test_torch_compile_of_a_block_is_checked_once_and_runs_on_the_cpu() -> None:
    workload = OpCoverage(spec("op_coverage", {"compile": True, "compile_timeout_s": 600}))

    events = run_until_compiled(workload)

    compiled = [result for result in workload.results() if result.op == COMPILE_OP]
    assert len(compiled) == 1
    # gcc is on this machine; a failure here names the compiler's error.
    assert compiled[0].status is OpStatus.NATIVE, compiled[0].message
    assert [event.message for event in events if event.message.startswith(COMPILE_OP)] == [f"{COMPILE_OP}: native"]
    assert len(events) == len(CATALOGUE) + 1


def test_a_torch_compile_that_overruns_its_time_is_failed_not_waited_for() -> None:
    workload = OpCoverage(spec("op_coverage", {"compile_timeout_s": 0.001}))

    run_until_compiled(workload)

    compiled = by_op(workload.results())[COMPILE_OP]
    assert compiled.status is OpStatus.FAILED
    assert compiled.detail == "did not finish within 0.001 s"


def test_a_slot_that_ends_before_torch_compile_finishes_leaves_no_process_behind() -> None:
    workload = OpCoverage(spec("op_coverage", {"compile_timeout_s": 600}))
    children_before = set(psutil.Process().children(recursive=True))

    run_slot(workload)

    assert set(psutil.Process().children(recursive=True)) - children_before == set()
    assert COMPILE_OP not in by_op(workload.results())


def test_an_op_that_raises_is_failed_with_its_traceback() -> None:
    def broken(device: torch.device) -> Outcome:
        raise RuntimeError("kernel image is invalid\nsecond line")

    result = probe_op("broken op", broken, CPU)

    assert result.status is OpStatus.FAILED
    assert result.message == "broken op: failed: RuntimeError: kernel image is invalid"
    assert "Traceback" in result.raw and "second line" in result.raw


def test_a_wrong_result_is_failed() -> None:
    def off_by_one(device: torch.device) -> Outcome:
        return Outcome(torch.ones(4, device=device) + 1, torch.ones(4), 1e-4)

    result = probe_op("off by one", off_by_one, CPU)

    assert result.status is OpStatus.FAILED
    assert result.detail == "wrong result: up to 1 from the reference (tolerance 0.0001)"


def test_an_op_that_returns_its_result_on_the_cpu_fell_back() -> None:
    def on_host(device: torch.device) -> Outcome:
        return Outcome(torch.ones(4))

    result = probe_op("host op", on_host, torch.device("meta"))

    assert result.status is OpStatus.FELL_BACK
    assert result.detail == "the result came back on cpu"


def test_a_fallback_warning_marks_the_op_and_is_recorded() -> None:
    # What Ascend's torch_npu says when an operator has no NPU kernel.
    notice = (
        "CAUTION: The operator 'aten::foo' is not currently supported on the NPU backend "
        "and will fall back to run on the CPU."
    )

    def warns(device: torch.device) -> Outcome:
        warnings.warn(notice, UserWarning, stacklevel=1)
        return Outcome(torch.ones(4))

    result = probe_op("npu op", warns, torch.device("meta"))

    assert result.status is OpStatus.FELL_BACK
    assert result.detail == f"UserWarning: {notice}"
    assert notice in result.raw


def test_a_rerun_reports_only_new_ops_and_changed_ones_saying_what_they_were() -> None:
    latest = {"silu": OpResult("silu", OpStatus.NATIVE), "rms_norm": OpResult("rms_norm", OpStatus.NATIVE)}
    rerun = [
        OpResult("silu", OpStatus.NATIVE),
        OpResult("rms_norm", OpStatus.FAILED, "RuntimeError: no kernel"),
        OpResult(COMPILE_OP, OpStatus.NATIVE),
    ]

    reported = to_report(latest, rerun)

    assert [result.message for result in reported] == [
        "rms_norm: failed: RuntimeError: no kernel; was native",
        f"{COMPILE_OP}: native",
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rerun_every_s": 5}, "rerun_every_s"),
        ({"compile_timeout_s": 0}, "compile_timeout_s"),
        ({"compile": "sometimes"}, "compile"),
        ({"complie": False}, "complie"),
    ],
)
def test_bad_op_coverage_params_are_refused_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        spec("op_coverage", params)


@dataclass(frozen=True)
class CapacitySlot:
    """One capacity slot on the CPU, with the process's RSS before it, while it idles, and after it."""

    workload: Capacity
    result: IntervalResult
    rss_before_bytes: int
    rss_idle_bytes: int
    rss_after_bytes: int


@pytest.fixture(scope="module")
def capacity_slot() -> CapacitySlot:
    workload = Capacity(spec("capacity", {"max_probe_gib": PROBE_GIB}, batch_size=16))
    # A first step imports what AdamW needs, so that the RSS comparison sees the probes and not torch's imports.
    torch.optim.AdamW([torch.nn.Parameter(torch.ones(1))]).step()
    device = CpuDevice()
    rss_before_bytes = psutil.Process().memory_info().rss
    device.prepare(workload)
    rss_idle_bytes = psutil.Process().memory_info().rss
    try:
        result = device.run_interval(workload, end_s=time.time() + INTERVAL_S)
    finally:
        device.teardown(workload)
    return CapacitySlot(workload, result, rss_before_bytes, rss_idle_bytes, psutil.Process().memory_info().rss)


def test_capacity_finds_a_largest_allocation_within_the_bound(
    capacity_slot: CapacitySlot,
) -> None:
    allocation = capacity_slot.workload.results().allocation

    assert allocation is not None
    assert allocation.bound_bytes <= PROBE_GIB * GIB
    assert 0 < allocation.largest_bytes <= allocation.bound_bytes


def test_capacity_reports_a_usable_fraction_after_fragmentation(
    capacity_slot: CapacitySlot,
) -> None:
    fragmentation = capacity_slot.workload.results().fragmentation

    assert fragmentation is not None
    assert 0 < fragmentation.largest_bytes <= fragmentation.free_bytes
    assert 0 < fragmentation.usable_fraction <= 1


def test_capacity_finds_a_trainable_model_within_the_bound(
    capacity_slot: CapacitySlot,
) -> None:
    model = capacity_slot.workload.results().model

    assert model is not None
    assert model.parameters > 0 and model.layers > 0
    assert model.parameters == model.layers * (model.hidden**2 + model.hidden)
    assert model.footprint_bytes <= PROBE_GIB * GIB
    assert (model.precision, model.batch_size) == ("fp32", 16)


def test_capacity_events_carry_the_figures(capacity_slot: CapacitySlot) -> None:
    result = capacity_slot.result

    assert result.errors == []
    assert [(event.kind, event.severity) for event in result.events] == [("capacity", "info")] * 3
    largest, fragmented, model = (event.message for event in result.events)
    assert largest.startswith("largest single allocation: 0.250 GiB of 0.250 GiB probed")
    assert "usable fraction" in fragmented and "GiB free" in fragmented
    assert "parameters" in model and "fp32" in model
    assert all(event.raw.startswith("{") for event in result.events)


def test_capacity_holds_no_host_memory_after_its_probes(capacity_slot: CapacitySlot) -> None:
    # Measured before the backend's teardown trims the heap: the slot idles on after the probes.
    assert capacity_slot.rss_idle_bytes - capacity_slot.rss_before_bytes < RSS_MARGIN_BYTES
    assert capacity_slot.rss_after_bytes - capacity_slot.rss_before_bytes < RSS_MARGIN_BYTES


def test_capacity_at_an_integer_precision_skips_the_model_with_a_reason() -> None:
    workload = Capacity(spec("capacity", {"max_probe_gib": 0.01}, precision="int8"))

    result = run_slot(workload)

    assert workload.results().model is None
    assert workload.results().fragmentation is not None
    skipped = [event for event in result.events if event.severity == "warning"]
    assert [event.message for event in skipped] == [
        "largest train model not measured at int8: training runs in floating point (fp32, tf32, bf16 or fp16)"
    ]


def test_an_allocation_the_host_refuses_is_an_answer_not_an_error() -> None:
    # Exbibytes: more address space than any host has, so every try is refused before anything is written.
    assert largest_allocation_bytes(CPU, 1 << 60, resolution_bytes=1 << 58, release_between=True) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [({"max_probe_gib": 0}, "max_probe_gib"), ({"hidden": 4}, "hidden"), ({"max_probe": 1}, "max_probe")],
)
def test_bad_capacity_params_are_refused_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        spec("capacity", params)

"""The GEMM and training workloads on the CPU with real torch: they load, measure, and catch corruption."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from soak.plan import WorkloadSpec
from soak.workloads.backends import CpuDevice
from soak.workloads.base import IntervalResult, Workload
from soak.workloads.gemm import Gemm
from soak.workloads.precision import UnsupportedPrecision
from soak.workloads.registry import load_workload
from soak.workloads.train import TrainStep

CPU = torch.device("cpu")
INTERVAL_S = 0.3
SMALL = {"gemm": {"size": 64}, "train": {"d_model": 32, "layers": 2, "heads": 2, "seq_len": 16, "vocab": 64}}


def spec(name: str, **fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": name, "batch_size": 16, "params": SMALL[name], **fields})


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the CPU backend runs its workers (and so the test leaves the machine usable)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(workload: Workload, seconds: float = INTERVAL_S) -> IntervalResult:
    """One sample interval through the CPU backend, as a worker runs it."""
    return CpuDevice().run_interval(workload, end_s=time.time() + seconds)


@pytest.mark.parametrize("name", ["gemm", "train"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_workload_runs_measures_and_verifies_on_the_cpu(name: str, precision: str) -> None:
    workload = load_workload(name)(spec(name, precision=precision))
    workload.prepare(CPU)

    result = run(workload)

    assert result.steps > 0
    assert result.work_units > 0 and result.units_per_s > 0
    assert result.errors == []
    assert result.sdc_mismatches == 0
    assert workload.verify()
    workload.teardown()


def test_gemm_counts_two_n_cubed_flops_per_step() -> None:
    gemm = Gemm(spec("gemm"))
    gemm.prepare(CPU)

    assert gemm.step() == pytest.approx(2 * 64**3 / 1e9)


def test_a_corrupted_gemm_result_fails_verification() -> None:
    gemm = Gemm(spec("gemm"))
    gemm.prepare(CPU)
    gemm.step()
    assert gemm.verify()

    gemm._c[17, 3] += 1e-3

    assert not gemm.verify()


def test_corrupted_gemm_inputs_are_counted_as_sdc_in_an_interval() -> None:
    gemm = Gemm(spec("gemm"))
    gemm.prepare(CPU)
    gemm.verify_every_steps = 1  # type: ignore[misc]
    # A flipped bit in an input matrix: every product from now on differs from the reference.
    gemm._b.view(torch.int32)[5, 9] ^= 1 << 12

    result = run(gemm)

    assert result.steps > 0
    assert result.sdc_mismatches == result.steps


def test_a_training_step_with_corrupted_weights_fails_verification() -> None:
    train = TrainStep(spec("train"))
    train.prepare(CPU)
    train.step()
    assert train.verify()

    with torch.no_grad():
        train._trainer.decoder.token_embedding.weight[:, 0] = math.nan
    train.step()

    assert not train.verify()


@pytest.mark.parametrize(
    ("name", "precision", "message"),
    [
        ("gemm", "fp8", "fp8 GEMM needs FP8 tensor cores"),
        ("train", "fp8", "train runs in fp32, tf32, bf16 or fp16"),
        ("train", "int8", "train runs in fp32, tf32, bf16 or fp16"),
    ],
)
def test_an_unsupported_precision_is_refused_at_prepare(name: str, precision: str, message: str) -> None:
    workload = load_workload(name)(spec(name, precision=precision))

    with pytest.raises(UnsupportedPrecision, match=message):
        workload.prepare(CPU)


def test_half_duty_cycle_leaves_the_device_idle_part_of_the_interval() -> None:
    gemm = Gemm(spec("gemm", duty_cycle=0.5))
    gemm.prepare(CPU)

    result = run(gemm)

    elapsed_s = result.end_s - result.start_s
    assert result.steps > 0
    # The busy half ends with the first step past it; a 64x64 GEMM step is far shorter than a quarter interval.
    assert result.busy_s < 0.75 * elapsed_s


def test_a_failing_step_becomes_an_error_not_a_crash() -> None:
    gemm = Gemm(spec("gemm"))
    gemm.prepare(CPU)
    gemm._b = torch.zeros(3, 3)  # shapes no longer fit

    result = run(gemm, 0.05)

    assert result.steps == 0
    assert len(result.errors) == 1 and result.errors[0].startswith("RuntimeError:")

"""Silent data corruption: one flipped bit in a GEMM result is caught every time, clean results never are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soak.plan import Precision, WorkloadSpec
from soak.workloads.backends import CpuDevice
from soak.workloads.gemm import Gemm
from soak.workloads.precision import UnsupportedPrecision

TRIALS = 1000
_INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def _gemm(precision: Precision = Precision.FP32, size: int = 32) -> Gemm:
    workload = Gemm(WorkloadSpec(name="gemm", precision=precision, params={"size": size}))
    CpuDevice().prepare(workload)
    return workload


def _flip_one_bit(result: torch.Tensor, rng: np.random.Generator) -> None:
    """The test hook: flip one random bit of one random element, in place."""
    bits = result.view(_INT_VIEW[result.dtype]).view(-1)
    index = int(rng.integers(bits.numel()))
    bit = int(rng.integers(bits.element_size() * 8))
    bits[index] ^= torch.tensor(1, dtype=bits.dtype) << bit


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16])
def test_every_single_bit_flip_is_caught_and_no_clean_result_is_flagged(precision: Precision) -> None:
    workload = _gemm(precision)
    rng = np.random.default_rng(7)
    caught = 0
    false_alarms = 0
    for _ in range(TRIALS):
        workload.step()
        false_alarms += not workload.verify()
        _flip_one_bit(workload._c, rng)
        caught += not workload.verify()
    assert (caught, false_alarms) == (TRIALS, 0)


def test_a_mismatch_is_described_with_its_magnitude() -> None:
    workload = _gemm()
    workload.step()
    workload._c[3, 4] += 0.5
    assert not workload.verify()
    assert workload.describe_mismatch() == "1 of 1024 elements differ from the reference, largest by 0.5"


def test_int8_runs_through_the_integer_matmul_and_is_checked_too() -> None:
    workload = _gemm(Precision.INT8, size=64)
    assert workload.step() == pytest.approx(2 * 64**3 / 1e9)
    assert workload._c.dtype == torch.int32 and workload.verify()
    workload._c[0, 0] += 1
    assert not workload.verify()


def test_fp8_is_refused_on_a_device_without_fp8_units() -> None:
    workload = Gemm(WorkloadSpec(name="gemm", precision=Precision.FP8, params={"size": 32}))
    with pytest.raises(UnsupportedPrecision, match="FP8 tensor cores"):
        CpuDevice().prepare(workload)

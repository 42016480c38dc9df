"""Map plan precisions to torch dtypes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from soak.plan import Precision

if TYPE_CHECKING:
    import torch


class UnsupportedPrecision(RuntimeError):
    """The device or workload cannot compute in this precision."""


def torch_dtype(precision: Precision) -> torch.dtype:
    """The torch dtype a matmul runs in for this precision (tf32 is fp32 storage with tf32 math)."""
    import torch

    dtypes = {
        Precision.FP64: torch.float64,
        Precision.FP32: torch.float32,
        Precision.TF32: torch.float32,
        Precision.BF16: torch.bfloat16,
        Precision.FP16: torch.float16,
    }
    if precision not in dtypes:
        raise UnsupportedPrecision(f"precision {precision.value} needs a scaled-matmul path this workload lacks")
    return dtypes[precision]

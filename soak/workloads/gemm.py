"""GEMM: dense matrix multiplication at the plan's precision, checked bit for bit against its first result."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.plan import Precision
from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.precision import UnsupportedPrecision, torch_dtype

if TYPE_CHECKING:
    import torch

# Big enough to saturate an accelerator's tensor cores; the CPU needs far less to be compute-bound.
ACCELERATOR_SIZE = 8192
CPU_SIZE = 512
# FP8 tensor cores arrive with compute capability 8.9 (Ada, Hopper).
FP8_MIN_CAPABILITY = (8, 9)


class GemmParams(WorkloadParams):
    """Square matrix size; by default one that saturates the device."""

    size: int | None = Field(default=None, ge=16, le=65536, description="n of the n×n matrices")


class Gemm(Workload):
    """C = A @ B on square matrices; 2·n³ operations per product (multiply-adds count twice, int8 alike)."""

    name: ClassVar[str] = "gemm"
    unit: ClassVar[str] = "GFLOP/s"
    # Dense bf16 peak of an H100/H200-class part; GEMM pulls past TDP, so it lives at the power cap.
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="GFLOP/s", peak_units_per_s=989_000.0, power_fraction=1.15, memory_fraction=0.05
    )
    Params: ClassVar[type[WorkloadParams]] = GemmParams

    def prepare(self, device: torch.device) -> None:
        import torch

        params = GemmParams.model_validate(self.spec.params)
        size = params.size or (CPU_SIZE if device.type == "cpu" else ACCELERATOR_SIZE)
        generator = torch.Generator(device="cpu").manual_seed(1234)
        precision = self.spec.precision
        # Every product is written into one preallocated output: no allocation on the hot path.
        self._multiply: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
        if precision is Precision.INT8:
            self._a = torch.randint(-128, 128, (size, size), generator=generator, dtype=torch.int8).to(device)
            self._b = torch.randint(-128, 128, (size, size), generator=generator, dtype=torch.int8).to(device)
            self._c = torch.empty(size, size, device=device, dtype=torch.int32)
            self._multiply = lambda a, b, out: torch._int_mm(a, b, out=out)
        elif precision is Precision.FP8:
            self._a, self._b, self._multiply = _fp8_operands(device, size, generator)
            self._c = torch.empty(size, size, device=device, dtype=torch.bfloat16)
        else:
            # tf32 is fp32 storage with reduced-precision tensor-core math; every other float runs exact fp32 math.
            torch.backends.cuda.matmul.allow_tf32 = precision is Precision.TF32
            dtype = torch_dtype(precision)
            self._a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            self._b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            self._c = torch.empty(size, size, device=device, dtype=dtype)
            self._multiply = lambda a, b, out: torch.matmul(a, b, out=out)
        self._multiply(self._a, self._b, self._c)
        self._reference = self._c.clone()
        self._gflop_per_step = 2.0 * size**3 / 1e9

    def step(self) -> float:
        self._multiply(self._a, self._b, self._c)
        return self._gflop_per_step

    def verify(self) -> bool:
        import torch

        # The same inputs through the same kernel must give bit-identical output; anything else is SDC.
        return bool(torch.equal(self._c, self._reference))

    def describe_mismatch(self) -> str:
        """How many elements differ from the reference, and by how much."""
        differs = self._c != self._reference
        delta = (self._c.double() - self._reference.double()).abs()
        return (
            f"{int(differs.sum())} of {differs.numel()} elements differ from the reference, "
            f"largest by {float(delta.max()):.6g}"
        )

    def teardown(self) -> None:
        del self._a, self._b, self._multiply, self._c, self._reference


def _fp8_operands(
    device: torch.device, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]:
    """e4m3 operands and a torch._scaled_mm product, where the device has FP8 units."""
    import torch

    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    if capability is None or capability < FP8_MIN_CAPABILITY:
        raise UnsupportedPrecision(
            "fp8 GEMM needs FP8 tensor cores (CUDA compute capability 8.9 or newer); use bf16 or fp16 here"
        )
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=torch.float8_e4m3fn)
    # _scaled_mm wants its second operand column-major.
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=torch.float8_e4m3fn).t().contiguous().t()
    scale = torch.ones((), device=device)

    def multiply(left: torch.Tensor, right: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch._scaled_mm(left, right, scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16, out=out)

    return a, b, multiply

"""GEMM: dense matrix multiplication at the plan's precision, checked against its first result."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.precision import torch_dtype

if TYPE_CHECKING:
    import torch


class GemmParams(WorkloadParams):
    """Square matrix size."""

    size: int = Field(default=512, ge=16, le=65536)


class Gemm(Workload):
    """C = A @ B on square matrices; FLOPs counted as 2·n³ per multiplication."""

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
        dtype = torch_dtype(self.spec.precision)
        generator = torch.Generator(device="cpu").manual_seed(1234)
        self._a = torch.randn(params.size, params.size, generator=generator).to(device=device, dtype=dtype)
        self._b = torch.randn(params.size, params.size, generator=generator).to(device=device, dtype=dtype)
        self._c = self._a @ self._b
        self._reference = self._c.clone()
        self._gflop_per_step = 2.0 * params.size**3 / 1e9

    def step(self) -> float:
        import torch

        torch.matmul(self._a, self._b, out=self._c)
        return self._gflop_per_step

    def verify(self) -> bool:
        import torch

        # The same inputs on the same device must give bit-identical output; anything else is SDC.
        return bool(torch.equal(self._c, self._reference))

    def teardown(self) -> None:
        del self._a, self._b, self._c, self._reference

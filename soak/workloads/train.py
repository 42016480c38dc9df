"""A training step: forward, backward and SGD update of a small MLP on synthetic data."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.precision import torch_dtype

if TYPE_CHECKING:
    import torch


class TrainParams(WorkloadParams):
    """Model width and depth."""

    hidden: int = Field(default=1024, ge=8, le=65536)
    layers: int = Field(default=3, ge=1, le=64)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)


class TrainStep(Workload):
    """One optimizer step per call; throughput in samples/s."""

    name: ClassVar[str] = "train"
    unit: ClassVar[str] = "samples/s"
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="samples/s", peak_units_per_s=40_000.0, power_fraction=0.85, memory_fraction=0.6
    )
    Params: ClassVar[type[WorkloadParams]] = TrainParams

    def prepare(self, device: torch.device) -> None:
        import torch

        params = TrainParams.model_validate(self.spec.params)
        dtype = torch_dtype(self.spec.precision)
        torch.manual_seed(1234)
        layers: list[torch.nn.Module] = []
        for _ in range(params.layers):
            layers += [torch.nn.Linear(params.hidden, params.hidden), torch.nn.GELU()]
        layers.append(torch.nn.Linear(params.hidden, 10))
        self._model = torch.nn.Sequential(*layers).to(device=device, dtype=dtype)
        self._optimizer = torch.optim.SGD(self._model.parameters(), lr=params.learning_rate)
        self._inputs = torch.randn(self.spec.batch_size, params.hidden, device=device, dtype=dtype)
        self._targets = torch.randint(0, 10, (self.spec.batch_size,), device=device)
        self._loss = torch.zeros((), device=device)

    def step(self) -> float:
        import torch

        self._optimizer.zero_grad(set_to_none=True)
        self._loss = torch.nn.functional.cross_entropy(self._model(self._inputs), self._targets)
        self._loss.backward()  # type: ignore[no-untyped-call]
        self._optimizer.step()
        return float(self.spec.batch_size)

    def verify(self) -> bool:
        # A NaN or infinite loss on well-scaled synthetic data means corrupted arithmetic.
        return math.isfinite(float(self._loss.detach().float()))

    def teardown(self) -> None:
        del self._model, self._optimizer, self._inputs, self._targets, self._loss

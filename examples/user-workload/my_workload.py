"""A user workload for soak's `entry_point`: a small MLP in inference mode, checked against its first output.

soak imports it by the plan's `target`, so this directory must be importable where the workers run, e.g.
`PYTHONPATH=examples/user-workload soak run examples/user-workload/plan.yaml`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams


class MlpInferenceParams(WorkloadParams):
    """The plan's `args` for MlpInference."""

    hidden: int = Field(default=256, ge=8, le=16384, description="width of the hidden layer")
    batch: int = Field(default=64, ge=1, le=65536, description="samples per forward pass")


class MlpInference(Workload):
    """Forward passes of a two-layer MLP; every result must equal the first one bit for bit."""

    name: ClassVar[str] = "mlp_inference"
    unit: ClassVar[str] = "samples/s"
    sim_profile: ClassVar[SimProfile | None] = None  # soak's entry_point supplies the simulated load
    Params: ClassVar[type[WorkloadParams]] = MlpInferenceParams

    def prepare(self, device: torch.device) -> None:
        params = MlpInferenceParams.model_validate(self.spec.params)
        generator = torch.Generator(device="cpu").manual_seed(0)
        self._model = torch.nn.Sequential(
            torch.nn.Linear(params.hidden, params.hidden), torch.nn.GELU(), torch.nn.Linear(params.hidden, 16)
        ).to(device)
        self._model.eval()
        self._inputs = torch.randn(params.batch, params.hidden, generator=generator).to(device)
        with torch.inference_mode():
            self._output = self._model(self._inputs)
        self._reference = self._output.clone()
        self._batch = params.batch

    def step(self) -> float:
        with torch.inference_mode():
            self._output = self._model(self._inputs)
        return float(self._batch)

    def verify(self) -> bool:
        return bool(torch.equal(self._output, self._reference))

    def teardown(self) -> None:
        del self._model, self._inputs, self._output, self._reference


def normalize_rows(device: torch.device, rows: int = 1024, cols: int = 1024) -> float:
    """One step of a function target: softmax over a fresh random matrix; returns the rows it normalized."""
    matrix = torch.randn(rows, cols, device=device)
    torch.softmax(matrix, dim=1)
    return float(rows)

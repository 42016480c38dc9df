"""Power cycling: a load square wave, GEMM for part of each period and idle for the rest, for thermal cycling."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.gemm import Gemm, GemmParams

if TYPE_CHECKING:
    import torch

DEFAULT_HIGH_FRACTION = 0.5
# Short, so that the interval loop notices its end promptly during the low part of the wave.
NAP_S = 0.05


class PowerCycleParams(GemmParams):
    """Square-wave period and the share of it under load, plus the GEMM size of the loaded part."""

    period_s: float = Field(default=20.0, ge=0.1, le=3600.0, description="seconds from one load onset to the next")
    high_fraction: float = Field(
        default=DEFAULT_HIGH_FRACTION, gt=0.0, lt=1.0, description="share of each period under load"
    )


class PowerCycle(Workload):
    """GEMM while the wave is high, sleep while it is low; GFLOP counted from the high part's multiplications."""

    name: ClassVar[str] = "power_cycle"
    unit: ClassVar[str] = Gemm.unit
    # The simulator takes one steady load per workload, so it sees the wave as its mean at the default high
    # fraction: GEMM's peak and power both scaled by it, with no swing of power or temperature to follow.
    sim_profile: ClassVar[SimProfile] = dataclasses.replace(
        Gemm.sim_profile,
        peak_units_per_s=Gemm.sim_profile.peak_units_per_s * DEFAULT_HIGH_FRACTION,
        power_fraction=Gemm.sim_profile.power_fraction * DEFAULT_HIGH_FRACTION,
    )
    Params: ClassVar[type[WorkloadParams]] = PowerCycleParams

    def prepare(self, device: torch.device) -> None:
        params = PowerCycleParams.model_validate(self.spec.params)
        self._gemm = Gemm(self.spec.model_copy(update={"name": Gemm.name, "params": {"size": params.size}}))
        self._gemm.prepare(device)
        self._period_s = params.period_s
        self._high_s = params.period_s * params.high_fraction
        # The phase runs on across intervals, so a period longer than the sample interval still alternates.
        self._wave_start_s = time.monotonic()

    def step(self) -> float:
        phase_s = (time.monotonic() - self._wave_start_s) % self._period_s
        if phase_s < self._high_s:
            return self._gemm.step()
        time.sleep(min(NAP_S, self._period_s - phase_s))
        return 0.0

    def verify(self) -> bool:
        return self._gemm.verify()

    def teardown(self) -> None:
        self._gemm.teardown()
        del self._gemm

"""Idle: the device does nothing for the interval, a cooling gap between loads for thermal cycling."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload

if TYPE_CHECKING:
    import torch

# Short, so that the interval loop notices its end promptly; each nap costs the host next to nothing.
NAP_S = 0.02


class Idle(Workload):
    """Sleeps through the interval and takes no params; it does no work, so its throughput is always zero."""

    name: ClassVar[str] = "idle"
    # No throughput to report: what idle shows is power and temperature falling to their resting values.
    unit: ClassVar[str] = "work/s"
    sim_profile: ClassVar[SimProfile | None] = None
    reports_throughput: ClassVar[bool] = False

    def prepare(self, device: torch.device) -> None:
        """Nothing to allocate: an idle device holds no buffers."""

    def step(self) -> float:
        time.sleep(NAP_S)
        return 0.0

"""The workload template: prepare() → step() until the interval ends → teardown(), results checked."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from soak.plan import WorkloadSpec
from soak.sim.profile import SimProfile
from soak.workloads.families import DeviceTimer

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkloadEvent:
    """Something a workload noticed that is not a number: an op that fell back to the CPU, an OOM, a NaN."""

    kind: str
    severity: str  # info | warning | critical
    message: str
    raw: str = ""


@dataclass
class IntervalResult:
    """What one sample interval of one workload achieved on one device."""

    start_s: float
    end_s: float
    work_units: float = 0.0
    steps: int = 0
    busy_s: float = 0.0
    device_s: float = 0.0
    sdc_mismatches: int = 0
    sdc_details: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    step_latencies_s: list[float] = field(default_factory=list)
    events: list[WorkloadEvent] = field(default_factory=list)
    # Further figures, "family.name_unit" → value, reported as family.<series>.name_unit (efficiency.n4_ratio).
    metrics: dict[str, float] = field(default_factory=dict)
    # The worker's own device memory at the end of the interval, as torch's allocator sees it (None: unknown).
    allocated_bytes: int | None = None
    reserved_bytes: int | None = None

    @property
    def units_per_s(self) -> float:
        """Throughput per second of device time: what the device delivers while it works."""
        return self.work_units / self.device_s if self.device_s > 0 else 0.0


class WorkloadParams(BaseModel):
    """Workload-specific settings from the plan's `params`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(ABC):
    """A load that runs in steps on a torch device and can check its own results."""

    name: ClassVar[str]
    unit: ClassVar[str]
    sim_profile: ClassVar[SimProfile | None]  # None: the workload leaves a simulated device idle
    reports_throughput: ClassVar[bool] = True
    # Latency percentiles need a synchronize after every step; only workloads whose users care pay for it.
    reports_step_latency: ClassVar[bool] = False
    Params: ClassVar[type[WorkloadParams]] = WorkloadParams
    verify_every_steps: ClassVar[int] = 16
    # Collective workloads run on every device of a group at once (see soak.workloads.collective).
    collective: ClassVar[bool] = False

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self._events: list[WorkloadEvent] = []

    def emit(self, kind: str, severity: str, message: str, raw: str = "") -> None:
        """Record an event; it travels with the current interval's result (or the next one, from prepare())."""
        self._events.append(WorkloadEvent(kind=kind, severity=severity, message=message, raw=raw))

    @abstractmethod
    def prepare(self, device: torch.device) -> None:
        """Allocate inputs and compute the reference result."""

    @abstractmethod
    def step(self) -> float:
        """Run one step (possibly asynchronously on the device); return the work units it does."""

    def verify(self) -> bool:
        """Check the latest result against the reference; False means silent data corruption."""
        return True

    def describe_mismatch(self) -> str:
        """What verify() found wrong, with its magnitude where the workload can tell."""
        return "the result differs from the reference"

    def interval_over(self, steps: int, busy_until_s: float) -> bool:
        """Whether the busy part of the interval has ended, asked before each step; `steps` were done so far."""
        return time.time() >= busy_until_s

    def continue_segment(self, wanted: bool) -> bool:
        """Whether to run another interval of the slot; collective workloads ask the other members too."""
        return wanted

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release what prepare() allocated."""

    def run_interval(self, *, end_s: float, synchronize: Callable[[], None], timer: DeviceTimer) -> IntervalResult:
        """Step until the busy part of the interval is over, then idle until `end_s`.

        `timer` measures the device's own time (events on an accelerator, this thread's CPU time on the CPU),
        so that a host that starves the worker is not mistaken for a slower device.
        """
        result = IntervalResult(start_s=time.time(), end_s=end_s)
        timer.start()
        busy_until_s = result.start_s + (end_s - result.start_s) * self.spec.duty_cycle
        try:
            while not self.interval_over(result.steps, busy_until_s):
                step_started_s = time.perf_counter()
                result.work_units += self.step()
                if self.reports_step_latency:
                    synchronize()
                    result.step_latencies_s.append(time.perf_counter() - step_started_s)
                result.steps += 1
                if result.steps % self.verify_every_steps == 0:
                    synchronize()
                    if not self.verify():
                        result.sdc_mismatches += 1
                        result.sdc_details.append(self.describe_mismatch())
            synchronize()
        except Exception as error:  # a failing step is an event, never a crash of the worker
            log.warning("%s step failed: %s", self.name, error)
            result.errors.append(f"{type(error).__name__}: {error}")
        result.busy_s = time.time() - result.start_s
        result.device_s = timer.stop()
        result.events, self._events = self._events, []
        remaining_s = end_s - time.time()
        if remaining_s > 0:
            time.sleep(remaining_s)
        result.end_s = time.time()
        return result

"""Your own Python workload: a Workload class or a plain function, named by `module:attribute` in the plan."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from soak.plan import WorkloadSpec
from soak.sim.profile import SimProfile
from soak.workloads.base import IntervalResult, Workload, WorkloadParams
from soak.workloads.families import DeviceTimer

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_TARGET_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# A simulated device never runs user code; it stands in with a generic training-like load: well below GEMM's
# power cap, a good share of memory, and a round rate in the plan's own (unknown) unit.
USER_WORKLOAD_SIM_PROFILE = SimProfile(
    unit="units/s", peak_units_per_s=1000.0, power_fraction=0.75, memory_fraction=0.4
)


class EntryPointError(RuntimeError):
    """A target that cannot be imported, lacks the attribute, or is neither a Workload class nor a function."""


class EntryPointParams(WorkloadParams):
    """What to import and call, with its arguments."""

    target: str = Field(description="module:attribute; a soak Workload subclass or a function fn(device, **args)")
    args: dict[str, Any] = Field(default_factory=dict, description="the class's params, or the function's kwargs")
    unit: str = Field(default="units/s", min_length=1, description="what the work units per second measure")

    @field_validator("target")
    @classmethod
    def _module_colon_attribute(cls, target: str) -> str:
        if _TARGET_RE.fullmatch(target) is None:
            raise ValueError(
                f"{target!r} is not a target; write module:attribute, e.g. mypackage.bench:MyWorkload or "
                "mypackage.bench:run_step"
            )
        return target


class _Function(Workload):
    """A plain function as a workload: each step calls fn(device, **args) and it returns the work it did."""

    name: ClassVar[str] = "entry_point"
    unit: ClassVar[str] = "units/s"
    sim_profile: ClassVar[SimProfile] = USER_WORKLOAD_SIM_PROFILE

    def __init__(self, spec: WorkloadSpec, function: Callable[..., float], target: str) -> None:
        super().__init__(spec)
        self._function = function
        self._target = target

    def prepare(self, device: torch.device) -> None:
        try:
            inspect.signature(self._function).bind(device, **self.spec.params)
        except TypeError as error:
            raise EntryPointError(f"{self._target} cannot be called as fn(device, **args): {error}") from None
        except ValueError:
            pass  # some builtins and extension functions have no signature to check against
        self._device = device

    def step(self) -> float:
        work = self._function(self._device, **self.spec.params)
        if isinstance(work, bool) or not isinstance(work, int | float):
            raise TypeError(f"{self._target} returned {work!r}; it must return the work units it did, as a number")
        return float(work)


def load_target(target: str, spec: WorkloadSpec) -> Workload:
    """Import `module:attribute` and make it a workload for `spec`, whose params are the target's args."""
    module_name, _, attribute_path = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise EntryPointError(
            f"cannot import {module_name!r} for target {target!r} ({error}); install its package where the "
            "worker runs, or add its directory to PYTHONPATH"
        ) from error
    for attribute in attribute_path.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise EntryPointError(
                f"module {module_name!r} has no attribute {attribute_path!r} (target {target!r})"
            ) from None
    if isinstance(found, type):
        if not issubclass(found, Workload):
            raise EntryPointError(f"{target!r} is a class but not a soak.workloads.base.Workload subclass")
        if not isinstance(getattr(found, "name", None), str):
            raise EntryPointError(f"{target!r} must set the class attribute `name`, as soak's workloads do")
        found.Params.model_validate(spec.params)
        return found(spec)
    if callable(found):
        return _Function(spec, found, target)
    raise EntryPointError(f"{target!r} is neither a Workload subclass nor a function fn(device, **args) -> float")


class EntryPoint(Workload):
    """Runs the plan's `target` through the usual template; a function target is called once per step."""

    name: ClassVar[str] = "entry_point"
    unit: ClassVar[str] = "units/s"
    sim_profile: ClassVar[SimProfile] = USER_WORKLOAD_SIM_PROFILE
    Params: ClassVar[type[WorkloadParams]] = EntryPointParams

    def prepare(self, device: torch.device) -> None:
        params = EntryPointParams.model_validate(self.spec.params)
        self._workload = load_target(params.target, self.spec.model_copy(update={"params": params.args}))
        log.info("entry_point %s prepares on %s; throughput in %s", params.target, device, params.unit)
        self._workload.prepare(device)

    def step(self) -> float:
        return self._workload.step()

    def verify(self) -> bool:
        return self._workload.verify()

    def describe_mismatch(self) -> str:
        return self._workload.describe_mismatch()

    def teardown(self) -> None:
        self._workload.teardown()
        del self._workload

    def run_interval(self, *, end_s: float, synchronize: Callable[[], None], timer: DeviceTimer) -> IntervalResult:
        """The target's own loop, so that its step latencies, verify cadence and events are honoured."""
        return self._workload.run_interval(end_s=end_s, synchronize=synchronize, timer=timer)

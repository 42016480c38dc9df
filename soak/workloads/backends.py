"""Device backends: how a worker opens its device and runs a workload interval on it."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import time
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import TypeAdapter

from soak.plan import Fault
from soak.scheduler.spec import WorkerSpec
from soak.sim.device import SimReading, SimSpec, SimulatedDevice
from soak.sim.state import publish_reading
from soak.workloads.base import IntervalResult, Workload
from soak.workloads.families import DeviceFamily, family

log = logging.getLogger(__name__)

_FAULTS = TypeAdapter(list[Fault])


class OpenDevice(Protocol):
    """A device a worker holds for the life of its process."""

    def prepare(self, workload: Workload) -> None:
        """Get the workload ready on this device."""

    def run_interval(self, workload: Workload, *, end_s: float) -> IntervalResult:
        """Load the device with the workload until `end_s`."""

    def teardown(self, workload: Workload) -> None:
        """Free what the workload held."""

    def software(self) -> dict[str, str]:
        """The versions of the software this device is driven with (torch, the vendor's extension, the stack)."""


class Backend(Protocol):
    """One device family: its Ray resource and how to open one of its devices."""

    name: ClassVar[str]
    ray_resource: ClassVar[str | None]
    cpus_per_worker: ClassVar[float]

    @classmethod
    def open(cls, spec: WorkerSpec) -> OpenDevice:
        """Open the device the spec names, in this worker process."""
        ...


def release_host_memory() -> None:
    """Return freed heap pages to the OS so that a worker's RSS tracks what it really holds."""
    gc.collect()
    libc_path = ctypes.util.find_library("c")
    if libc_path is not None:
        libc = ctypes.CDLL(libc_path)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


class TorchDevice:
    """A device torch drives, of any family: the workload runs on it, timed by the device's own clock."""

    def __init__(self, family: DeviceFamily, index: int) -> None:
        import torch

        self._family = family
        self._index = index
        self._device = torch.device(family.torch_device_type, index)

    def prepare(self, workload: Workload) -> None:
        workload.prepare(self._device)

    def run_interval(self, workload: Workload, *, end_s: float) -> IntervalResult:
        result = workload.run_interval(
            end_s=end_s,
            synchronize=lambda: self._family.synchronize(self._index),
            timer=self._family.timer(self._index),
        )
        memory = self._family.memory(self._index)
        result.allocated_bytes, result.reserved_bytes = memory.allocated_bytes, memory.reserved_bytes
        return result

    def software(self) -> dict[str, str]:
        description = self._family.describe(self._index)
        return {key: value for key, value in description.items() if key not in {"vendor", "model"}}

    def teardown(self, workload: Workload) -> None:
        import torch

        workload.teardown()
        empty_cache = getattr(getattr(torch, self._family.torch_device_type, None), "empty_cache", None)
        if callable(empty_cache):
            empty_cache()
        release_host_memory()


class CpuDevice(TorchDevice):
    """The host CPU driven by real torch kernels, one thread so that it does not starve the node."""

    def __init__(self) -> None:
        import torch

        # With one thread the kernels run on the calling thread, whose CPU time is then the device's time.
        torch.set_num_threads(1)
        super().__init__(family("cpu"), 0)


class CpuBackend:
    """The CPU as a real device: always present."""

    name: ClassVar[str] = "cpu"
    ray_resource: ClassVar[str | None] = None
    cpus_per_worker: ClassVar[float] = 1.0

    @classmethod
    def open(cls, spec: WorkerSpec) -> OpenDevice:
        return CpuDevice()


class AcceleratorBackend:
    """An accelerator family from soak.workloads.families; a worker drives the device its spec names."""

    name: ClassVar[str]
    ray_resource: ClassVar[str | None]
    cpus_per_worker: ClassVar[float] = 1.0

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.ray_resource = family(cls.name).ray_resource

    @classmethod
    def open(cls, spec: WorkerSpec) -> OpenDevice:
        accelerator = family(cls.name)
        if not accelerator.available():
            raise RuntimeError(f"{cls.name}: no device is visible to this worker ({accelerator.module} missing?)")
        return TorchDevice(accelerator, visible_index(accelerator, spec.device_index))


def visible_index(accelerator: DeviceFamily, physical_index: int) -> int:
    """Where physical device N sits among those visible to this process (a scheduler may have narrowed them)."""
    visible = os.environ.get(accelerator.visible_devices_env or "", "")
    if not visible:
        return physical_index
    ids = [item.strip() for item in visible.split(",")]
    if str(physical_index) not in ids:
        raise RuntimeError(
            f"device {physical_index} is not visible to this worker ({accelerator.visible_devices_env}={visible}); "
            "the scheduler placed it on another device"
        )
    return ids.index(str(physical_index))


class CudaBackend(AcceleratorBackend):
    """NVIDIA, and the CUDA-compatible stacks (AMD ROCm, Hygon DCU, Iluvatar CoreX, MetaX)."""

    name: ClassVar[str] = "cuda"

    @classmethod
    def open(cls, spec: WorkerSpec) -> OpenDevice:
        # CUDA numbers GPUs fastest first unless told otherwise; the agent names them in NVML's PCI bus order, so
        # device cuda3 of the agent is device 3 of the worker only in bus order.
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        return super().open(spec)


class NpuBackend(AcceleratorBackend):
    """Huawei Ascend through torch_npu."""

    name: ClassVar[str] = "npu"


class MluBackend(AcceleratorBackend):
    """Cambricon through torch_mlu."""

    name: ClassVar[str] = "mlu"


class MusaBackend(AcceleratorBackend):
    """Moore Threads through torch_musa."""

    name: ClassVar[str] = "musa"


class XpuBackend(AcceleratorBackend):
    """Intel GPUs through torch.xpu."""

    name: ClassVar[str] = "xpu"


class SupaBackend(AcceleratorBackend):
    """Biren through torch_supa."""

    name: ClassVar[str] = "supa"


class SimDevice:
    """A simulated accelerator: physics and faults from soak.sim, published where the node agent reads them."""

    tick_s: ClassVar[float] = 0.5

    def __init__(self, spec: WorkerSpec) -> None:
        now_s = time.time()
        self._name = spec.device_name
        self._state_dir = Path(spec.sim_state_dir)
        self._device = SimulatedDevice(
            SimSpec(name=spec.device_name),
            faults=_FAULTS.validate_python(list(spec.faults)),
            campaign_start_s=spec.campaign_start_s,
            seed=spec.seed,
            start_s=now_s,
        )
        # Bytes this process really holds for an injected host-memory leak, so the agent sees real RSS grow.
        self._leaked: list[bytearray] = []
        self._leaked_bytes = 0

    def prepare(self, workload: Workload) -> None:
        self._advance(workload=None, duty_cycle=0.0)

    def run_interval(self, workload: Workload, *, end_s: float) -> IntervalResult:
        result = IntervalResult(start_s=time.time(), end_s=end_s)
        previous_s = result.start_s
        while (now_s := time.time()) < end_s:
            time.sleep(min(self.tick_s, end_s - now_s))
            now_s = time.time()
            reading = self._advance(workload=workload, duty_cycle=workload.spec.duty_cycle)
            while reading.hung:  # a hung device makes no progress until the scheduler replaces the worker
                time.sleep(self.tick_s)
            result.work_units += reading.units_per_s * (now_s - previous_s)
            result.sdc_mismatches += reading.sdc_events
            previous_s = now_s
        result.steps = 1
        result.end_s = time.time()
        # The simulated rate already includes the duty cycle, so device time is the whole interval.
        result.busy_s = result.device_s = result.end_s - result.start_s
        return result

    def teardown(self, workload: Workload) -> None:
        self._advance(workload=None, duty_cycle=0.0)

    def software(self) -> dict[str, str]:
        import torch

        return {"stack": "simulated", "torch": str(torch.__version__)}

    def _advance(self, *, workload: Workload | None, duty_cycle: float) -> SimReading:
        profile = workload.sim_profile if workload is not None else None
        reading = self._device.advance(time.time(), profile, duty_cycle)
        self._hold_leak(reading.host_leak_bytes)
        publish_reading(self._state_dir, self._name, reading)
        return reading

    def _hold_leak(self, total_bytes: int) -> None:
        missing_bytes = total_bytes - self._leaked_bytes
        if missing_bytes > 0:
            self._leaked.append(bytearray(b"\x01") * missing_bytes)  # written, so the pages are resident
            self._leaked_bytes = total_bytes


class SimulatedBackend:
    """Simulated accelerators, placed on the custom Ray resource SOAK_SIM."""

    name: ClassVar[str] = "sim"
    ray_resource: ClassVar[str | None] = "SOAK_SIM"
    cpus_per_worker: ClassVar[float] = 0.0

    @classmethod
    def open(cls, spec: WorkerSpec) -> OpenDevice:
        return SimDevice(spec)

"""Accelerator families: how to find, drive, time and describe each vendor's torch device, all as data."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryStats:
    """One device's memory as torch's allocator and the driver see it; 0 where the backend does not report it."""

    allocated_bytes: int
    reserved_bytes: int
    peak_bytes: int
    free_bytes: int
    total_bytes: int


class DeviceTimer(Protocol):
    """Measures the device's own time for the work queued between start() and stop()."""

    def start(self) -> None:
        """Mark the beginning of the timed work."""

    def stop(self) -> float:
        """Wait for the timed work to finish; return the seconds of device time since start()."""
        ...


@dataclass(frozen=True)
class Stack:
    """One software stack a family's devices can run under, and how to recognise it."""

    vendor: str
    name: str
    # Set only where the stack selects devices with another variable than its family's.
    visible_devices_env: str | None = None
    # True: only builds with torch.version.hip set; False: only builds without; None: either.
    hip: bool | None = None
    # Any of these in the device name picks the stack; empty matches every name.
    name_markers: tuple[str, ...] = ()
    # The attribute of torch.version that holds the stack's version, where torch records it.
    version_attr: str | None = None

    def matches(self, *, hip_build: bool, device_name: str) -> bool:
        """Whether a device of this name, under a torch build with or without HIP, runs on this stack."""
        if self.hip is not None and self.hip != hip_build:
            return False
        return not self.name_markers or any(marker in device_name for marker in self.name_markers)

    def label(self, torch_version: Any) -> str:
        """The stack's name with its version, e.g. "CUDA 12.4"."""
        version = getattr(torch_version, self.version_attr, None) if self.version_attr else None
        return f"{self.name} {version}" if version else self.name


class _ThreadTimeEvent:
    """A CPU stand-in for a device event: torch runs single-threaded there, so the thread's CPU time is device time."""

    def __init__(self, enable_timing: bool = False) -> None:
        self._thread_time_s = 0.0

    def record(self, stream: object = None) -> None:
        self._thread_time_s = time.thread_time()

    def synchronize(self) -> None:
        """CPU kernels have finished by the time they return."""

    def elapsed_time(self, end: _ThreadTimeEvent) -> float:
        return (end._thread_time_s - self._thread_time_s) * 1000.0


def _cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what the platform module knows."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


class _HostCpu:
    """The host CPU behind the same functions torch's device modules expose, from host facilities."""

    Event = _ThreadTimeEvent

    def device_count(self) -> int:
        return 1

    def synchronize(self, device: int | None = None) -> None:
        """CPU kernels have finished by the time they return."""

    def get_device_name(self, device: int | None = None) -> str:
        return _cpu_model_name()

    def memory_allocated(self, device: int | None = None) -> int:
        return psutil.Process().memory_info().rss

    def memory_reserved(self, device: int | None = None) -> int:
        # The host allocator keeps no pool apart from what the process holds resident.
        return psutil.Process().memory_info().rss

    def max_memory_allocated(self, device: int | None = None) -> int:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # ru_maxrss is in KiB on Linux
        # The kernel updates its high-water mark lazily, so it can trail the RSS read just before.
        return max(peak_bytes, self.memory_allocated())

    def mem_get_info(self, device: int | None = None) -> tuple[int, int]:
        memory = psutil.virtual_memory()
        return memory.available, memory.total


class _EventTimer:
    """Device time between two timing events recorded on the device's current stream."""

    def __init__(self, device_api: Any, index: int) -> None:
        current_stream = getattr(device_api, "current_stream", None)
        self._stream = current_stream(index) if current_stream is not None else None
        self._start = device_api.Event(enable_timing=True)
        self._end = device_api.Event(enable_timing=True)

    def start(self) -> None:
        self._start.record(self._stream)

    def stop(self) -> float:
        self._end.record(self._stream)
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end)) / 1000.0


class SynchronizedWallTimer:
    """Wall time between two device synchronizations: for a backend without timing events, and for collectives."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._synchronize = synchronize
        self._started_s = 0.0

    def start(self) -> None:
        self._synchronize()
        self._started_s = time.perf_counter()

    def stop(self) -> float:
        self._synchronize()
        return time.perf_counter() - self._started_s


@dataclass(frozen=True)
class DeviceFamily:
    """One accelerator family: its torch device type, the package that owns it, and how to drive its devices."""

    name: str
    torch_device_type: str
    module: str
    collective_backend: str
    visible_devices_env: str | None
    ray_resource: str | None
    # In match order; the last is the family's default when none matches.
    stacks: tuple[Stack, ...]
    # Families whose devices this one makes look available, so that detection must not report them too.
    shadows: tuple[str, ...] = ()
    # Stands in for torch's device module where that module does not measure what soak needs (the host CPU).
    device_api: Callable[[], object] | None = None

    def available(self) -> bool:
        """Whether the family's package imports and reports at least one device; never raises."""
        try:
            if importlib.util.find_spec(self.module) is None:
                return False
            return self.device_count() > 0
        except Exception as error:  # a broken vendor package makes its family unavailable, not soak unusable
            log.debug("device family %s is unavailable: %s: %s", self.name, type(error).__name__, error)
            return False

    def device_count(self) -> int:
        """How many devices of this family the process sees."""
        return int(self._device_api().device_count())

    def synchronize(self, index: int) -> None:
        """Wait until all work queued on device `index` has finished."""
        self._device_api().synchronize(index)

    def timer(self, index: int) -> DeviceTimer:
        """A timer of device `index`'s own time: timing events where the backend has them."""
        device_api = self._device_api()
        if hasattr(device_api, "Event"):
            return _EventTimer(device_api, index)
        return SynchronizedWallTimer(lambda: self.synchronize(index))

    def memory(self, index: int) -> MemoryStats:
        """Memory allocated, reserved and at peak by this process on device `index`, and the device's free/total."""
        device_api = self._device_api()

        def read_bytes(function: str) -> int:
            reader = getattr(device_api, function, None)
            return int(reader(index)) if reader is not None else 0

        mem_get_info = getattr(device_api, "mem_get_info", None)
        free_bytes, total_bytes = mem_get_info(index) if mem_get_info is not None else (0, 0)
        return MemoryStats(
            allocated_bytes=read_bytes("memory_allocated"),
            reserved_bytes=read_bytes("memory_reserved"),
            peak_bytes=read_bytes("max_memory_allocated"),
            free_bytes=int(free_bytes),
            total_bytes=int(total_bytes),
        )

    def stack(self, index: int) -> Stack:
        """The stack device `index` really runs under (ROCm and Hygon DCU report the `cuda` type too)."""
        torch = importlib.import_module("torch")
        hip_build = torch.version.hip is not None
        device_name = self._device_name(index)
        for candidate in self.stacks:
            if candidate.matches(hip_build=hip_build, device_name=device_name):
                return candidate
        return self.stacks[-1]

    def describe(self, index: int) -> dict[str, str]:
        """Vendor, model, stack, the torch (and extension) versions and the collective library of device `index`, for
        reports."""
        torch = importlib.import_module("torch")
        stack = self.stack(index)
        description = {
            "vendor": stack.vendor,
            "model": self._device_name(index),
            "stack": stack.label(torch.version),
            "torch": str(torch.__version__),
            "collectives": self._collectives_label(torch),
        }
        if self.module != "torch":
            description[self.module] = str(getattr(self._module(), "__version__", "unknown"))
        return description

    def _collectives_label(self, torch: Any) -> str:
        """The collective library with its version where torch exposes it (NCCL, or RCCL under ROCm)."""
        if self.collective_backend != "nccl":
            return self.collective_backend
        try:
            version = ".".join(str(part) for part in torch.cuda.nccl.version())
        except (AttributeError, RuntimeError, TypeError):  # a torch built without NCCL
            return self.collective_backend
        return f"{'rccl' if torch.version.hip else 'nccl'} {version}"

    def _module(self) -> ModuleType:
        return importlib.import_module(self.module)

    def _device_api(self) -> Any:
        """The object with device_count(), synchronize(), Event, memory_allocated() ... for this family."""
        if self.device_api is not None:
            return self.device_api()
        module = self._module()
        torch = importlib.import_module("torch")
        # An extension owns its device module (torch_npu.npu) and registers it on torch (torch.npu); a bare
        # extension may expose the functions itself.
        return getattr(module, self.torch_device_type, None) or getattr(torch, self.torch_device_type, None) or module

    def _device_name(self, index: int) -> str:
        get_device_name = getattr(self._device_api(), "get_device_name", None)
        return str(get_device_name(index)) if get_device_name is not None else self.name


_CUDA_STACKS = (
    Stack("Hygon", "DTK/HIP", "HIP_VISIBLE_DEVICES", hip=True, name_markers=("DCU", "Hygon"), version_attr="hip"),
    Stack("AMD", "ROCm", "HIP_VISIBLE_DEVICES", hip=True, version_attr="hip"),
    Stack("Iluvatar", "CoreX/CUDA", hip=False, name_markers=("Iluvatar",), version_attr="cuda"),
    Stack("MetaX", "MACA/CUDA", hip=False, name_markers=("MetaX", "MXC"), version_attr="cuda"),
    Stack("NVIDIA", "CUDA", hip=False, version_attr="cuda"),
)

_CPU_STACKS = (
    Stack("Intel", "CPU", name_markers=("Intel",)),
    Stack("AMD", "CPU", name_markers=("AMD",)),
    Stack("Hygon", "CPU", name_markers=("Hygon",)),
    Stack("unknown", "CPU"),
)

FAMILIES: tuple[DeviceFamily, ...] = (
    DeviceFamily(
        name="npu",
        torch_device_type="npu",
        module="torch_npu",
        collective_backend="hccl",
        visible_devices_env="ASCEND_RT_VISIBLE_DEVICES",
        ray_resource="NPU",
        stacks=(Stack("Huawei", "CANN"),),
    ),
    DeviceFamily(
        name="mlu",
        torch_device_type="mlu",
        module="torch_mlu",
        collective_backend="cncl",
        visible_devices_env="MLU_VISIBLE_DEVICES",
        ray_resource="MLU",
        stacks=(Stack("Cambricon", "Neuware"),),
    ),
    DeviceFamily(
        name="musa",
        torch_device_type="musa",
        module="torch_musa",
        collective_backend="mccl",
        visible_devices_env="MUSA_VISIBLE_DEVICES",
        ray_resource="MUSA",
        stacks=(Stack("Moore Threads", "MUSA"),),
    ),
    DeviceFamily(
        name="supa",
        torch_device_type="supa",
        module="torch_supa",
        collective_backend="bccl",
        visible_devices_env="SUPA_VISIBLE_DEVICES",
        ray_resource="SUPA",
        stacks=(Stack("Biren", "SUPA"),),
        # torch_supa makes torch.cuda report its devices.
        shadows=("cuda",),
    ),
    DeviceFamily(
        name="cuda",
        torch_device_type="cuda",
        module="torch",
        collective_backend="nccl",
        visible_devices_env="CUDA_VISIBLE_DEVICES",
        ray_resource="GPU",
        stacks=_CUDA_STACKS,
    ),
    DeviceFamily(
        name="xpu",
        torch_device_type="xpu",
        module="torch",
        collective_backend="xccl",
        visible_devices_env="ZE_AFFINITY_MASK",
        # Ray schedules Intel GPUs on its GPU resource and selects them with ZE_AFFINITY_MASK.
        ray_resource="GPU",
        stacks=(Stack("Intel", "oneAPI", version_attr="xpu"),),
    ),
    DeviceFamily(
        name="cpu",
        torch_device_type="cpu",
        module="torch",
        collective_backend="gloo",
        visible_devices_env=None,
        ray_resource=None,
        stacks=_CPU_STACKS,
        device_api=_HostCpu,
    ),
)

_BY_NAME = {candidate.name: candidate for candidate in FAMILIES}


def family(name: str) -> DeviceFamily:
    """The device family called `name`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown device family {name!r}; known: {', '.join(_BY_NAME)}") from None


def detect(families: Sequence[DeviceFamily] = FAMILIES) -> list[DeviceFamily]:
    """The families with devices in this process, in detection order, leaving out those an earlier one shadows."""
    found: list[DeviceFamily] = []
    shadowed: set[str] = set()
    for candidate in families:
        if candidate.name not in shadowed and candidate.available():
            found.append(candidate)
            shadowed.update(candidate.shadows)
    return found

"""Host telemetry with psutil: CPU, memory, swap, temperatures, and the memory, threads and files of each worker."""

from __future__ import annotations

import contextlib
import math
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Protocol

import psutil

from agents.collectors.base import CollectContext, Collected
from agents.config import AgentSettings
from soak.nodes.schemas import DeviceIn

_NOT_IN_METRIC_NAMES = re.compile(r"[^a-z0-9_]+")
USS_INTERVAL_S = 30.0


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class TemperatureSensor(Protocol):
    """One sensor as psutil.sensors_temperatures() reports it."""

    @property
    def current(self) -> float: ...


def temperatures_c(readings: Mapping[str, Sequence[TemperatureSensor]]) -> dict[str, float]:
    """The hottest sensor of each chip (`coretemp` → `host.temperature.coretemp_c`); no sensors, no metrics."""
    hottest: dict[str, float] = {}
    for chip, sensors in readings.items():
        values = [sensor.current for sensor in sensors if math.isfinite(sensor.current)]
        label = _NOT_IN_METRIC_NAMES.sub("_", chip.lower()).strip("_")[:64]
        if values and label:
            metric = f"host.temperature.{label}_c"
            hottest[metric] = max(hottest.get(metric, -math.inf), *values)
    return hottest


class HostCollector:
    """The node itself, and the host CPU offered as a real device."""

    name: ClassVar[str] = "host"

    def __init__(self, settings: AgentSettings) -> None:
        self._settings = settings
        self._cpu_device = f"{settings.node_name}/cpu0"
        self._processes: dict[int, psutil.Process] = {}
        self._uss_read_s: dict[int, float] = {}
        psutil.cpu_percent(None)  # the first call only sets the reference point

    def devices(self) -> list[DeviceIn]:
        if not self._settings.cpu_device:
            return []
        return [
            DeviceIn(
                name=self._cpu_device,
                backend="cpu",
                index=0,
                vendor="cpu",
                model=cpu_model(),
                memory_total_bytes=psutil.virtual_memory().total,
                driver_version=platform.release(),
            )
        ]

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        collected = Collected()
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        collected.sample(now_s, "host.cpu_ratio", psutil.cpu_percent(None) / 100.0)
        collected.sample(now_s, "host.memory_used_bytes", memory.total - memory.available)
        collected.sample(now_s, "host.memory_total_bytes", memory.total)
        collected.sample(now_s, "host.swap_used_bytes", swap.used)
        collected.sample(now_s, "host.swap_total_bytes", swap.total)
        for metric, value in temperatures_c(_read_temperatures()).items():
            collected.sample(now_s, metric, value)
        for device, pid in context.worker_pids.items():
            process = self._process(pid)
            if process is None:
                continue
            try:
                self._sample_process(collected, now_s, device, process)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._processes.pop(pid, None)
                self._uss_read_s.pop(pid, None)
            except psutil.AccessDenied:
                continue  # a process of another user that hides even its RSS: no data, not an error
        return collected

    def _sample_process(self, collected: Collected, now_s: float, device: str, process: psutil.Process) -> None:
        """Whatever this agent may read of a worker: another user's process may hide its USS and files.

        USS walks every mapping of the process (about 5 ms for a worker that has imported torch), so it is read
        every USS_INTERVAL_S; RSS, threads and files cost microseconds and are read every cycle.
        """
        with process.oneshot():
            collected.sample(now_s, "process.rss_bytes", process.memory_info().rss, device)
            if now_s - self._uss_read_s.get(process.pid, 0.0) >= USS_INTERVAL_S:
                self._uss_read_s[process.pid] = now_s
                with contextlib.suppress(psutil.AccessDenied):
                    collected.sample(now_s, "process.uss_bytes", process.memory_full_info().uss, device)
            collected.sample(now_s, "process.threads", process.num_threads(), device)
            with contextlib.suppress(psutil.AccessDenied):
                collected.sample(now_s, "process.open_files", process.num_fds(), device)

    def _process(self, pid: int) -> psutil.Process | None:
        if pid not in self._processes:
            try:
                self._processes[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return None
        return self._processes[pid]


def _read_temperatures() -> Mapping[str, Sequence[TemperatureSensor]]:
    """psutil's sensors where the platform has them (Linux, FreeBSD) and the kernel lets us read them."""
    if not hasattr(psutil, "sensors_temperatures"):
        return {}
    try:
        return psutil.sensors_temperatures()
    except OSError:
        return {}

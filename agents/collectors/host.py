"""Host telemetry with psutil: CPU, memory, and the RSS, threads and files of every worker process."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import ClassVar

import psutil

from agents.collectors.base import CollectContext, Collected
from agents.config import AgentSettings
from soak.nodes.schemas import DeviceIn


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class HostCollector:
    """The node itself, and the host CPU offered as a real device."""

    name: ClassVar[str] = "host"

    def __init__(self, settings: AgentSettings) -> None:
        self._settings = settings
        self._cpu_device = f"{settings.node_name}/cpu0"
        self._processes: dict[int, psutil.Process] = {}
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
        collected.sample(now_s, "host.cpu_ratio", psutil.cpu_percent(None) / 100.0)
        collected.sample(now_s, "host.memory_used_bytes", memory.total - memory.available)
        collected.sample(now_s, "host.memory_total_bytes", memory.total)
        for device, pid in context.worker_pids.items():
            process = self._process(pid)
            if process is None:
                continue
            try:
                with process.oneshot():
                    collected.sample(now_s, "process.rss_bytes", process.memory_info().rss, device)
                    collected.sample(now_s, "process.threads", process.num_threads(), device)
                    collected.sample(now_s, "process.open_files", process.num_fds(), device)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._processes.pop(pid, None)
        return collected

    def _process(self, pid: int) -> psutil.Process | None:
        if pid not in self._processes:
            try:
                self._processes[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return None
        return self._processes[pid]

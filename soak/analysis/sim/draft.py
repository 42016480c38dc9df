"""One simulated device while it is being built: what it reports when, its values, its events."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

from agents.xid import classify
from soak.analysis.series import Series
from soak.analysis.sim.processes import BoolArray, FloatArray, counter
from soak.analysis.telemetry import DeviceTelemetry, EventRecord

# Seconds after a (re)start that the workload is still settling; left out of its steady windows.
RESTART_SETTLE_S = 30.0
THROUGHPUT_SERIES = "train"

# Which liveness mask decides whether a metric is reported: the agent reads the device while the node is up,
# the worker process's /proc entry while it exists, and the worker's own reports while it makes progress.
WORKER_PROCESS_METRICS = frozenset({"process.rss_bytes", "process.open_files", "process.threads"})
WORKER_PROGRESS_METRICS = frozenset(
    {
        "worker.busy_ratio",
        "worker.memory_allocated_bytes",
        "worker.memory_reserved_bytes",
        f"throughput.{THROUGHPUT_SERIES}",
    }
)


class DeviceDraft:
    """A device under construction; faults shape when it reports, then its values, then it becomes telemetry."""

    def __init__(
        self,
        *,
        device: str,
        node: str,
        time_s: FloatArray,
        sample_interval_s: float,
        warmup_end_s: float,
        end_s: float,
        memory_total_bytes: float,
        allocated_share: float,
        reserved_slack_bytes: float,
    ) -> None:
        self.device = device
        self.node = node
        self.time_s = time_s
        self.n = int(time_s.size)
        self.sample_interval_s = sample_interval_s
        self.warmup_end_s = warmup_end_s
        self.end_s = end_s
        self.memory_total_bytes = memory_total_bytes
        # The training job's share of device memory and the allocator's cache above it (a leak runs out of the rest).
        self.allocated_share = allocated_share
        self.reserved_slack_bytes = reserved_slack_bytes
        # The node agent is reachable / the worker process exists / the worker makes progress.
        self.reporting: BoolArray = np.ones(self.n, dtype=bool)
        self.alive: BoolArray = np.ones(self.n, dtype=bool)
        self.progress: BoolArray = np.ones(self.n, dtype=bool)
        self.gpu_resets_s: list[float] = []
        self.values: dict[str, FloatArray | float] = {}
        # Counter metric → new counts per sample; summed into the counter (volatile ones reset with the GPU).
        self.increments: dict[str, FloatArray] = {}
        self.events: list[EventRecord] = []

    def index(self, time_s: float) -> int:
        """Index of the first sample at or after time_s (n when past the end)."""
        return int(np.searchsorted(self.time_s, time_s, side="left"))

    def stop(self, start_s: float, end_s: float, *, what: str) -> None:
        """Mark [start_s, end_s) as a stretch without telemetry ("node"), worker ("worker") or progress ("progress")."""
        first, last = self.index(start_s), self.index(end_s)
        self.progress[first:last] = False
        if what in {"worker", "node"}:
            self.alive[first:last] = False
        if what == "node":
            self.reporting[first:last] = False

    def array(self, metric: str) -> FloatArray:
        """The metric's values as a full, writable array (a constant becomes one)."""
        value = self.values[metric]
        if isinstance(value, float):
            value = np.full(self.n, value)
            self.values[metric] = value
        return value

    def event(
        self,
        time_s: float,
        kind: str,
        severity: str,
        message: str,
        *,
        code: int | None = None,
        raw: str = "",
        whole_node: bool = False,
    ) -> None:
        """Record an event as the store would hand it to the detectors (a node's own events carry no device)."""
        device = None if whole_node else self.device
        self.events.append(EventRecord(device, time_s, kind, severity, code, message, raw))

    def xid(self, time_s: float, code: int) -> None:
        """A driver error as the kernel log reports it, classified as soak's agent classifies it."""
        xid = classify(code)
        bus = 0x18 + int(self.device.rsplit("gpu", 1)[-1]) * 0x10
        raw = f"NVRM: Xid (PCI:0000:{bus:02x}:00): {code}, pid=4242, {xid.title}"
        self.event(time_s, "driver_error", xid.severity, f"XID {code} ({xid.title}): {xid.action}", code=code, raw=raw)

    def worker_died(self, time_s: float, *, restart_after_s: float | None, reason: str) -> None:
        """The worker process ends; the runner starts a new one after restart_after_s (never when None)."""
        self.event(time_s, "worker_died", "warning", f"worker of {self.device} died: {reason}")
        self.stop(time_s, self.end_s if restart_after_s is None else time_s + restart_after_s, what="worker")

    def stack_change(self, time_s: float, component: str, old: str, new: str) -> None:
        """A software or firmware version seen to change."""
        raw = json.dumps({"component": component, "old": old, "new": new})
        self.event(time_s, "stack_change", "info", f"{component} changed from {old} to {new}", raw=raw)

    def process_starts_s(self) -> npt.NDArray[np.float64]:
        """When each worker process started (the first one at the first sample)."""
        rises = np.flatnonzero(np.diff(self.alive.astype(np.int8)) == 1) + 1
        starts: npt.NDArray[np.float64] = self.time_s[rises]
        return starts

    def steady_windows(self) -> list[tuple[float, float]]:
        """Stretches of uninterrupted progress after warm-up, less each restart's settling seconds."""
        working = self.progress & self.reporting
        edges = np.flatnonzero(np.diff(np.concatenate([[0], working.astype(np.int8), [0]])))
        windows = []
        for first, stop in zip(edges[::2], edges[1::2], strict=True):
            start_s = max(float(self.time_s[first]) + (RESTART_SETTLE_S if first > 0 else 0.0), self.warmup_end_s)
            end_s = float(self.time_s[stop - 1])
            if end_s > start_s:
                windows.append((start_s, end_s))
        return windows

    def telemetry(self, *, vendor: str, model: str, start_s: float, volatile: frozenset[str]) -> DeviceTelemetry:
        """The finished device as the detectors read it; series share one read-only time array per liveness mask."""
        reset_indices = [self.index(time_s) for time_s in self.gpu_resets_s if self.index(time_s) < self.n]
        for metric, increments in self.increments.items():
            self.values[metric] = counter(increments, reset_indices if metric in volatile else [])
        masks: dict[str, BoolArray] = {
            "node": self.reporting,
            "worker": self.reporting & self.alive,
            "progress": self.reporting & self.progress,
        }
        times = {name: _masked_time(self.time_s, mask) for name, mask in masks.items()}
        series: dict[str, Series] = {}
        for metric, value in self.values.items():
            which = (
                "progress"
                if metric in WORKER_PROGRESS_METRICS
                else "worker"
                if metric in WORKER_PROCESS_METRICS
                else "node"
            )
            time_s, keep = times[which], masks[which]
            if time_s.size == 0:
                continue
            series[metric] = Series(time_s, _masked_values(value, keep, time_s.size))
        return DeviceTelemetry(
            device=self.device,
            node=self.node,
            vendor=vendor,
            model=model,
            memory_total_bytes=self.memory_total_bytes,
            start_s=start_s,
            warmup_end_s=self.warmup_end_s,
            end_s=self.end_s,
            sample_interval_s=self.sample_interval_s,
            series=series,
            events=tuple(sorted(self.events, key=lambda event: event.time_s)),
            steady_windows={THROUGHPUT_SERIES: self.steady_windows()},
        )


def _masked_time(time_s: FloatArray, mask: BoolArray) -> FloatArray:
    if mask.all():
        return time_s
    missing = np.flatnonzero(~mask)
    if mask[: missing[0]].all() and not mask[missing[0] :].any():
        return time_s[: missing[0]]  # a view: reporting simply stopped
    kept = time_s[mask]
    kept.setflags(write=False)
    return kept


def _masked_values(value: FloatArray | float, mask: BoolArray, size: int) -> FloatArray:
    if isinstance(value, float):
        constant: FloatArray = np.broadcast_to(np.float64(value), (size,))
        return constant
    kept = value[:size] if size == value.size or mask[:size].all() else value[mask]
    kept.setflags(write=False)
    return kept

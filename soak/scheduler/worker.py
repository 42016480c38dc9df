"""The worker that owns one device: runs rotation slots interval by interval and reports to its node agent."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.inbox import WorkerReport, write_report
from soak.plan import WorkloadSpec
from soak.scheduler.spec import Segment, WorkerSpec
from soak.workloads.base import IntervalResult, Workload
from soak.workloads.collective import CollectiveWorkload
from soak.workloads.registry import load_backend, load_workload

log = logging.getLogger(__name__)
LATENCY_PERCENTILES = (50, 95, 99)


class DeviceWorker:
    """Long-lived per device; the executor (a Ray actor or a local process) calls run_segment repeatedly."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._spec = spec
        self._device = load_backend(spec.backend).open(spec)
        self._inbox_dir = Path(spec.inbox_dir)
        self._progress_s = time.time()
        self._interrupt = threading.Event()
        # One slot at a time: a restarted controller dispatches the next slot while the interrupted one winds down.
        self._segment_lock = threading.Lock()
        software = self._device.software()
        versions = ", ".join(f"{component} {version}" for component, version in software.items())
        self._report_events([{**self._event("software_stack", "info", versions), "raw": json.dumps(software)}])

    def heartbeat(self) -> float:
        """Epoch seconds of the last completed interval (or of start-up)."""
        return self._progress_s

    def interrupt(self) -> None:
        """End the current slot (or the one about to start) at the next interval boundary."""
        self._interrupt.set()

    def run_segment(self, segment: Segment) -> dict[str, Any]:
        """Run one workload until the slot ends; return a summary for the workload-run record."""
        with self._segment_lock:
            try:
                return self._run_segment(segment)
            finally:
                # Cleared only once honoured: an interrupt that arrives before the slot starts must still end it.
                self._interrupt.clear()

    def _run_segment(self, segment: Segment) -> dict[str, Any]:
        spec = WorkloadSpec.model_validate(segment.workload)
        workload = load_workload(spec.name)(spec)
        if isinstance(workload, CollectiveWorkload):
            workload.group = segment.group
        try:
            self._device.prepare(workload)
        except Exception as error:
            self._report_events([self._event("workload_error", "warning", f"{spec.name} could not start: {error}")])
            self._idle_until(segment.until_s)
            return {"workload": spec.name, "error": f"{type(error).__name__}: {error}"}
        intervals, units, sdc, errors = 0, 0.0, 0, 0
        interval_s = self._spec.sample_interval_s
        try:
            while workload.continue_segment(
                not self._interrupt.is_set() and time.time() < segment.until_s - interval_s * 0.1
            ):
                end_s = min(time.time() + interval_s, segment.until_s)
                result = self._device.run_interval(workload, end_s=end_s)
                self._report_interval(workload, result, segment.series)
                intervals += 1
                units += result.work_units
                sdc += result.sdc_mismatches
                errors += len(result.errors)
                self._progress_s = time.time()
        finally:
            self._device.teardown(workload)
        self._idle_until(segment.until_s)  # a collective slot the group gave up early
        return {
            "workload": spec.name,
            "unit": workload.unit,
            "intervals": intervals,
            "work_units": units,
            "sdc_mismatches": sdc,
            "errors": errors,
        }

    def _idle_until(self, until_s: float) -> None:
        while not self._interrupt.is_set() and time.time() < until_s:
            time.sleep(min(self._spec.sample_interval_s, max(0.0, until_s - time.time())))
            self._progress_s = time.time()

    def _report_interval(self, workload: Workload, result: IntervalResult, series: str) -> None:
        device = self._spec.device_name

        def sample(metric: str, value: float) -> dict[str, Any]:
            return {"time_s": result.end_s, "device": device, "metric": metric, "value": value}

        samples = [
            sample("worker.busy_ratio", result.busy_s / max(result.end_s - result.start_s, 1e-9)),
            sample("worker.device_time_ratio", result.device_s / max(result.busy_s, 1e-9)),
        ]
        if result.allocated_bytes is not None and result.reserved_bytes is not None:
            samples += [
                sample("worker.memory_allocated_bytes", result.allocated_bytes),
                sample("worker.memory_reserved_bytes", result.reserved_bytes),
            ]
        if workload.reports_throughput:
            samples.append(sample(f"throughput.{series}", result.units_per_s))
        if result.step_latencies_s:
            latencies_ms = np.percentile(np.asarray(result.step_latencies_s) * 1000.0, LATENCY_PERCENTILES)
            samples += [
                sample(f"latency.{series}.p{percentile}_ms", float(value))
                for percentile, value in zip(LATENCY_PERCENTILES, latencies_ms, strict=True)
            ]
        for key, value in result.metrics.items():
            family, _, name = key.partition(".")
            samples.append(sample(f"{family}.{series}.{name}", value))
        events = [self._event("workload_error", "warning", f"{workload.name}: {error}") for error in result.errors]
        events += [
            {**self._event(event.kind, event.severity, f"{workload.name}: {event.message}"), "raw": event.raw}
            for event in result.events
        ]
        if result.sdc_mismatches:
            events.append(
                self._event(
                    "sdc",
                    "critical",
                    f"{workload.name} produced {result.sdc_mismatches} wrong result(s) without any error: "
                    + "; ".join(result.sdc_details[:3]),
                )
            )
        write_report(
            self._inbox_dir,
            WorkerReport(
                campaign_id=self._spec.campaign_id,
                device=device,
                pid=os.getpid(),
                samples=samples,
                events=events,
            ),
        )

    def _report_events(self, events: list[dict[str, Any]]) -> None:
        write_report(
            self._inbox_dir,
            WorkerReport(
                campaign_id=self._spec.campaign_id,
                device=self._spec.device_name,
                pid=os.getpid(),
                events=events,
            ),
        )

    def _event(self, kind: str, severity: str, message: str) -> dict[str, Any]:
        return {
            "time_s": time.time(),
            "device": self._spec.device_name,
            "kind": kind,
            "severity": severity,
            "message": message,
        }

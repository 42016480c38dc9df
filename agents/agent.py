"""The node agent: registers its node, runs collectors every interval, and delivers telemetry through its spool."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx

from agents.client import (
    BatchesUnsupported,
    BatchInvalid,
    ControllerClient,
    ControllerRejected,
    UnknownToController,
)
from agents.collectors.base import CollectContext, Collected, Collector
from agents.config import AgentSettings
from agents.exporter import DeliveryHealth, LatestValues, serve
from agents.inbox import WorkerReport, pending_paths, read_reports
from agents.spool import Outgoing, Spool, Spooled, report_batch_id
from soak.nodes.schemas import NodeIn

log = logging.getLogger(__name__)
MAX_REPORTS_PER_CYCLE = 5000
# One XID reaches the agent twice, from NVML's event and from the kernel's log line, within a second or so.
SAME_ERROR_S = 5.0


def load_collectors(settings: AgentSettings) -> list[Collector]:
    """Every collector registered in the soak.collectors entry-point group; one that fails to load is skipped."""
    collectors: list[Collector] = []
    for point in entry_points(group="soak.collectors"):
        try:
            collectors.append(point.load()(settings))
        except Exception:
            log.exception("skipping collector %s: it failed to load", point.name)
    return collectors


class Agent:
    """One per node."""

    def __init__(self, settings: AgentSettings, collectors: list[Collector] | None = None) -> None:
        self.settings = settings
        self.collectors = collectors if collectors is not None else load_collectors(settings)
        self.client = ControllerClient(settings.controller_url, settings.api_token)
        self.values = LatestValues(settings.node_name)
        self.metrics_port: int | None = None
        self.spool = Spool(
            settings.spool_path,
            files_dir=settings.spooled_dir,
            node=settings.node_name,
            max_batches=settings.spool_max_batches,
            max_bytes=settings.spool_max_bytes,
        )
        returned = self.spool.return_strays(to=settings.inbox_dir)
        if returned:
            log.warning(
                "%d spooled report file(s) had lost their batch; they go through the inbox again", len(returned)
            )
        self._worker_pids: dict[str, int] = {}
        self._device_by_bus: dict[str, str] = {}
        self._driver_errors: dict[tuple[str | None, int], tuple[float, str]] = {}
        self._registered = False
        self._reachable = True
        self._last_push_s: float | None = None
        self._push_failures = 0
        self._next_push_s = 0.0  # monotonic
        # Lowered when the controller takes fewer per request (an older one, or tighter SOAK_MAX_* limits).
        self._batches_per_push = settings.push_max_batches
        self._stop = threading.Event()

    def stop(self) -> None:
        """End the loop after the current cycle."""
        self._stop.set()

    def close(self) -> None:
        """Release the collectors' resources (NVML, the kernel log), the controller connection and the spool."""
        for collector in self.collectors:
            close = getattr(collector, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("collector %s failed to close", collector.name)
        self.client.close()
        self.spool.close()

    def run(self) -> None:
        """Serve /metrics, then collect and deliver until stopped."""
        self.settings.inbox_dir.mkdir(parents=True, exist_ok=True)
        self.settings.sim_state_dir.mkdir(parents=True, exist_ok=True)
        metrics_server = serve(self.values, host=self.settings.metrics_host, port=self.settings.metrics_port)
        self.metrics_port = int(metrics_server.server_port)
        log.info(
            "agent %s: /metrics on %s:%s",
            self.settings.node_name,
            self.settings.metrics_host,
            self.metrics_port,
        )
        next_s = time.time()
        try:
            while not self._stop.is_set():
                self.cycle(time.time())
                next_s += self.settings.interval_s
                self._stop.wait(max(0.0, next_s - time.time()))
            self._deliver(until_s=time.monotonic() + self.settings.interval_s)
        finally:
            self.close()
            metrics_server.shutdown()
            metrics_server.server_close()

    def node_in(self) -> NodeIn:
        """This node's registration."""
        devices = [device for collector in self.collectors for device in collector.devices()]
        self.values.describe_devices(devices)
        self._device_by_bus = {device.bus_id: device.name for device in devices if device.bus_id}
        agent_url = f"http://{self.settings.metrics_host}:{self.metrics_port}" if self.metrics_port else None
        return NodeIn(
            hostname=self.settings.node_name,
            agent_url=agent_url,
            inbox_dir=str(self.settings.inbox_dir.resolve()),
            sim_state_dir=str(self.settings.sim_state_dir.resolve()),
            devices=devices,
        )

    def cycle(self, now_s: float) -> None:
        """One interval: read worker reports and collectors, spool them in one transaction, deliver the oldest."""
        started_s = time.monotonic()
        paths = self.spool.not_spooled(pending_paths(self.settings.inbox_dir, limit=MAX_REPORTS_PER_CYCLE))
        reports = read_reports(paths)
        for _, report in reports:
            self._worker_pids[report.device] = report.pid
        collected = self._collect(now_s)
        self.values.update(collected.samples)
        self.values.count_events(collected.events)
        outgoing: list[Outgoing] = []
        if collected.samples or collected.events:
            outgoing.append(Outgoing(self._batch(str(uuid.uuid4()), None, collected.samples, collected.events)))
        by_campaign: dict[int, list[tuple[Path, WorkerReport]]] = {}
        for path, report in reports:
            by_campaign.setdefault(report.campaign_id, []).append((path, report))
        for campaign_id, group in by_campaign.items():
            samples = [sample for _, report in group for sample in report.samples]
            events = [event for _, report in group for event in report.events]
            self.values.update(samples, campaign_id=campaign_id)
            self.values.count_events(events)
            files = tuple(path for path, _ in group)
            batch_id = report_batch_id(self.settings.node_name, [path.name for path in files])
            outgoing.append(Outgoing(self._batch(batch_id, campaign_id, samples, events), files))
        try:
            self.spool.append(outgoing, now_s=now_s)
        except sqlite3.Error:
            log.exception("could not spool this cycle's telemetry; worker reports stay in the inbox")
        if started_s >= self._next_push_s:
            self._next_push_s = started_s + self.settings.push_interval_s
            self._deliver(until_s=started_s + self.settings.interval_s)
        self.values.record_delivery(self.delivery_health())

    def delivery_health(self) -> DeliveryHealth:
        """The spool's depth and drops, push failures, and the last acknowledged push."""
        stats = self.spool.stats()
        return DeliveryHealth(
            spool_batches=stats.batches,
            spool_bytes=stats.size_bytes,
            oldest_spooled_s=stats.oldest_created_s,
            last_push_s=self._last_push_s,
            dropped_batches_total=stats.dropped.batches,
            dropped_samples_total=stats.dropped.samples,
            dropped_events_total=stats.dropped.events,
            push_failures_total=self._push_failures,
        )

    def _collect(self, now_s: float) -> Collected:
        merged = Collected()
        context = CollectContext(worker_pids=dict(self._worker_pids), device_by_bus=dict(self._device_by_bus))
        for collector in self.collectors:
            started = time.perf_counter()
            try:
                collected = collector.collect(now_s, context)
            except Exception:
                log.exception("collector %s failed this cycle", collector.name)
                self.values.record_collector(collector.name, seconds=time.perf_counter() - started, ok=False)
                continue
            self.values.record_collector(collector.name, seconds=time.perf_counter() - started, ok=True)
            merged.samples.extend(collected.samples)
            merged.events.extend(event for event in collected.events if self._first_report(event, collector.name))
        return merged

    def _first_report(self, event: dict[str, Any], source: str) -> bool:
        """False for a driver error another collector already reported (NVML's event and the kernel's log line)."""
        if event["kind"] != "driver_error" or event.get("code") is None:
            return True
        key = (event.get("device"), int(event["code"]))
        earlier = self._driver_errors.get(key)
        if earlier is not None and earlier[1] != source and abs(earlier[0] - float(event["time_s"])) < SAME_ERROR_S:
            return False
        self._driver_errors[key] = (float(event["time_s"]), source)
        return True

    def _batch(
        self, batch_id: str, campaign_id: int | None, samples: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "batch_id": batch_id,
            "node": self.settings.node_name,
            "campaign_id": campaign_id,
            "samples": samples,
            "events": events,
        }

    def _deliver(self, *, until_s: float) -> None:
        """Send spooled batches oldest first, several per request, until the spool is empty, the controller is away,
        or time is up."""
        while batches := self.spool.oldest(max_batches=self._batches_per_push, max_bytes=self.settings.push_max_bytes):
            try:
                if not self._registered:
                    self.client.register(self.settings.node_name, self.node_in())
                    self._registered = True
                    log.info("registered node %s", self.settings.node_name)
                if len(batches) == 1:
                    results = [self.client.send(batches[0].payload_json)]
                else:
                    results = self.client.send_batches([batch.payload_json for batch in batches])
            except UnknownToController:
                self._registered = False
            except BatchesUnsupported:
                log.info("the controller takes one batch per request; sending them one by one")
                self._batches_per_push = 1
            except BatchInvalid as error:
                if len(batches) > 1:
                    self._batches_per_push = max(1, len(batches) // 2)
                    log.warning(
                        "controller refused a request of %d batches (%s); sending at most %d per request",
                        len(batches),
                        error,
                        self._batches_per_push,
                    )
                else:
                    log.error("controller refused a malformed batch; its reports are kept as .bad files: %s", error)
                    self.spool.set_aside(batches[0], into=self.settings.inbox_dir)
            except (httpx.HTTPError, ControllerRejected) as error:
                self._push_failures += 1
                if self._reachable:
                    log.warning("controller unavailable (%s); telemetry waits in the spool", error)
                self._reachable = False
                return
            else:
                self._settle(batches, results)
            if time.monotonic() >= until_s:
                return

    def _settle(self, batches: list[Spooled], results: list[dict[str, Any]]) -> None:
        """Acknowledge the batches the controller stored or had; set aside those it refused whole."""
        stored = []
        # A batch without an answer (none should be) stays spooled and goes again under its id.
        for batch, result in zip(batches, results, strict=False):
            refused = result.get("refused") or []
            if refused:
                log.error(
                    "controller refused batch %s; its reports are kept as .bad files: %s",
                    batch.batch_id,
                    "; ".join(refused),
                )
                self.spool.set_aside(batch, into=self.settings.inbox_dir)
                continue
            stored.append(batch)
            for rejected in result.get("rejected", []):
                log.warning("controller rejected %s: %s", rejected.get("field"), rejected.get("problem"))
        self.spool.ack(*stored)
        self._last_push_s = time.time()
        if not self._reachable:
            log.info("controller reachable again; delivering %d spooled batch(es)", self.spool.stats().batches)
        self._reachable = True

"""The node agent: registers its node, runs collectors every interval, forwards worker reports, never loses them."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx

from agents.client import BatchInvalid, ControllerClient, ControllerRejected, UnknownToController
from agents.collectors.base import CollectContext, Collected, Collector
from agents.config import AgentSettings
from agents.exporter import LatestValues, serve
from agents.inbox import WorkerReport, pending_reports
from soak.nodes.schemas import NodeIn

log = logging.getLogger(__name__)
MAX_REPORTS_PER_CYCLE = 5000


def load_collectors(settings: AgentSettings) -> list[Collector]:
    """Every collector registered in the soak.collectors entry-point group; one that fails to load is skipped."""
    collectors: list[Collector] = []
    for point in entry_points(group="soak.collectors"):
        try:
            collectors.append(point.load()(settings))
        except Exception:
            log.exception("skipping collector %s: it failed to load", point.name)
    return collectors


@dataclass
class _Pending:
    """A batch waiting for the controller, with the inbox files it carries (deleted once acknowledged)."""

    batch: dict[str, Any]
    files: list[Path] = field(default_factory=list)


class Agent:
    """One per node."""

    def __init__(self, settings: AgentSettings, collectors: list[Collector] | None = None) -> None:
        self.settings = settings
        self.collectors = collectors if collectors is not None else load_collectors(settings)
        self.client = ControllerClient(settings.controller_url, settings.api_token)
        self.values = LatestValues(settings.node_name)
        self.metrics_port: int | None = None
        self._queue: deque[_Pending] = deque()
        self._in_flight: set[Path] = set()
        self._worker_pids: dict[str, int] = {}
        self._registered = False
        self._stop = threading.Event()

    def stop(self) -> None:
        """End the loop after the current cycle."""
        self._stop.set()

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
        while not self._stop.is_set():
            self.cycle(time.time())
            next_s += self.settings.interval_s
            self._stop.wait(max(0.0, next_s - time.time()))
        self._deliver()
        self.client.close()
        metrics_server.shutdown()
        metrics_server.server_close()

    def node_in(self) -> NodeIn:
        """This node's registration."""
        devices = [device for collector in self.collectors for device in collector.devices()]
        agent_url = f"http://{self.settings.metrics_host}:{self.metrics_port}" if self.metrics_port else None
        return NodeIn(
            hostname=self.settings.node_name,
            agent_url=agent_url,
            inbox_dir=str(self.settings.inbox_dir.resolve()),
            sim_state_dir=str(self.settings.sim_state_dir.resolve()),
            devices=devices,
        )

    def cycle(self, now_s: float) -> None:
        """One interval: read worker reports and collectors, queue the batches, deliver what the controller takes."""
        reports = [
            (path, report)
            for path, report in pending_reports(self.settings.inbox_dir, limit=MAX_REPORTS_PER_CYCLE)
            if path not in self._in_flight
        ]
        for _, report in reports:
            self._worker_pids[report.device] = report.pid
        collected = self._collect(now_s)
        self.values.update(collected.samples)
        if collected.samples or collected.events:
            self._enqueue(_Pending(self._batch(None, collected.samples, collected.events)))
        by_campaign: dict[int, list[tuple[Path, WorkerReport]]] = {}
        for path, report in reports:
            by_campaign.setdefault(report.campaign_id, []).append((path, report))
        for campaign_id, group in by_campaign.items():
            samples = [sample for _, report in group for sample in report.samples]
            events = [event for _, report in group for event in report.events]
            self.values.update(samples)
            files = [path for path, _ in group]
            self._in_flight.update(files)
            self._queue.append(_Pending(self._batch(campaign_id, samples, events), files))
        self._deliver()
        self.values.record_queue(len(self._queue))

    def _collect(self, now_s: float) -> Collected:
        merged = Collected()
        context = CollectContext(worker_pids=dict(self._worker_pids))
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
            merged.events.extend(collected.events)
        return merged

    def _batch(
        self, campaign_id: int | None, samples: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "batch_id": str(uuid.uuid4()),
            "node": self.settings.node_name,
            "campaign_id": campaign_id,
            "samples": samples,
            "events": events,
        }

    def _enqueue(self, pending: _Pending) -> None:
        # Only collector batches are dropped when the queue is full: worker reports stay on disk until delivered.
        if len(self._queue) >= self.settings.max_queued_batches:
            for index, queued in enumerate(self._queue):
                if not queued.files:
                    del self._queue[index]
                    log.warning("controller unreachable for long: dropped the oldest collector batch")
                    break
        self._queue.append(pending)

    def _deliver(self) -> None:
        while self._queue:
            try:
                if not self._registered:
                    self.client.register(self.settings.node_name, self.node_in())
                    self._registered = True
                    log.info("registered node %s", self.settings.node_name)
                result = self.client.send(self._queue[0].batch)
            except UnknownToController:
                self._registered = False
                continue
            except BatchInvalid as error:
                invalid = self._queue.popleft()
                log.error("controller refused a malformed batch; its reports are kept as .bad files: %s", error)
                for path in invalid.files:
                    path.rename(path.with_suffix(".bad"))
                    self._in_flight.discard(path)
                continue
            except (httpx.HTTPError, ControllerRejected) as error:
                log.warning("controller unavailable (%s); %d batch(es) wait", error, len(self._queue))
                return
            pending = self._queue.popleft()
            for rejected in result.get("rejected", []):
                log.warning("controller rejected %s: %s", rejected.get("field"), rejected.get("problem"))
            for path in pending.files:
                path.unlink(missing_ok=True)
                self._in_flight.discard(path)

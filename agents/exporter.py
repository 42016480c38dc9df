"""The agent's /metrics on 127.0.0.1: the latest sample of every series, plus each collector's health."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(metric: str) -> tuple[str, dict[str, str]]:
    """`device.temperature_c` → `soak_device_temperature_c`; `throughput.gemm` → `soak_throughput{workload}`."""
    if metric.startswith("throughput."):
        return "soak_throughput", {"workload": metric.removeprefix("throughput.")}
    return "soak_" + _UNSAFE.sub("_", metric), {}


class LatestValues(Collector):
    """Holds the newest value per (metric, device) and yields fresh families at each scrape."""

    def __init__(self, node: str) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str | None], float] = {}
        self._collector_seconds: dict[str, float] = {}
        self._collector_up: dict[str, bool] = {}
        self._queued_batches = 0

    def update(self, samples: list[dict[str, Any]]) -> None:
        """Remember the newest values."""
        with self._lock:
            for sample in samples:
                self._latest[(sample["metric"], sample.get("device"))] = float(sample["value"])

    def record_collector(self, name: str, *, seconds: float, ok: bool) -> None:
        """Remember how a collector's last run went."""
        with self._lock:
            self._collector_seconds[name] = seconds
            self._collector_up[name] = ok

    def record_queue(self, batches: int) -> None:
        """Remember how many batches wait for the controller."""
        with self._lock:
            self._queued_batches = batches

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = dict(self._latest)
            seconds = dict(self._collector_seconds)
            up = dict(self._collector_up)
            queued = self._queued_batches
        families: dict[str, GaugeMetricFamily] = {}
        for (metric, device), value in sorted(latest.items(), key=lambda item: (item[0][0], item[0][1] or "")):
            name, extra = prometheus_name(metric)
            labels = {"node": self._node, "device": device or "", **extra}
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, f"Latest {metric}", labels=list(labels))
            family.add_metric(list(labels.values()), value)
        yield from families.values()
        duration = GaugeMetricFamily(
            "soak_agent_collector_duration_seconds", "Collector run time", labels=["node", "collector"]
        )
        success = GaugeMetricFamily(
            "soak_agent_collector_success",
            "1 when the collector's last run worked",
            labels=["node", "collector"],
        )
        for name in sorted(seconds):
            duration.add_metric([self._node, name], seconds[name])
            success.add_metric([self._node, name], 1.0 if up[name] else 0.0)
        yield duration
        yield success
        yield GaugeMetricFamily(
            "soak_agent_queued_batches", "Batches not yet acknowledged by the controller", value=float(queued)
        )


def serve(values: LatestValues, *, host: str, port: int) -> WSGIServer:
    """Expose /metrics in a background thread; the server's `server_port` says where (0 asks for a free one)."""
    registry = CollectorRegistry()
    registry.register(values)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server

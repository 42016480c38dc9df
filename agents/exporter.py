"""The agent's /metrics on 127.0.0.1: the latest sample of every series, each collector's health, and delivery."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(metric: str) -> tuple[str, dict[str, str]]:
    """`device.temperature_c` → `soak_device_temperature_c`; `throughput.gemm` → `soak_throughput{workload}`."""
    if metric.startswith("throughput."):
        return "soak_throughput", {"workload": metric.removeprefix("throughput.")}
    return "soak_" + _UNSAFE.sub("_", metric), {}


@dataclass(frozen=True)
class DeliveryHealth:
    """How delivery to the controller goes: what waits in the spool, what was dropped or failed, the last push."""

    spool_batches: int = 0
    spool_bytes: int = 0
    oldest_spooled_s: float | None = None
    last_push_s: float | None = None
    dropped_batches_total: int = 0
    dropped_samples_total: int = 0
    dropped_events_total: int = 0
    push_failures_total: int = 0


class LatestValues(Collector):
    """Holds the newest value per (metric, device) and yields fresh families at each scrape."""

    def __init__(self, node: str) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str | None], float] = {}
        self._collector_seconds: dict[str, float] = {}
        self._collector_up: dict[str, bool] = {}
        self._delivery = DeliveryHealth()

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

    def record_delivery(self, health: DeliveryHealth) -> None:
        """Remember how delivery to the controller goes."""
        with self._lock:
            self._delivery = health

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = dict(self._latest)
            seconds = dict(self._collector_seconds)
            up = dict(self._collector_up)
            delivery = self._delivery
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
        yield from self._delivery_families(delivery)

    def _delivery_families(self, health: DeliveryHealth) -> Iterator[Metric]:
        oldest_age_s = 0.0 if health.oldest_spooled_s is None else max(0.0, time.time() - health.oldest_spooled_s)
        for name, documentation, value in (
            (
                "soak_agent_spool_batches",
                "Batches spooled, not yet acknowledged by the controller",
                health.spool_batches,
            ),
            ("soak_agent_spool_bytes", "Disk the spooled batches and their report files take", health.spool_bytes),
            ("soak_agent_spool_oldest_age_seconds", "Age of the oldest spooled batch (0 when none)", oldest_age_s),
            (
                "soak_agent_last_push_timestamp_seconds",
                "Unix time of the last batch the controller acknowledged (0 before the first)",
                health.last_push_s or 0.0,
            ),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["node"])
            gauge.add_metric([self._node], float(value))
            yield gauge
        for name, documentation, total in (
            ("soak_agent_dropped_batches", "Batches dropped from a full spool", health.dropped_batches_total),
            ("soak_agent_dropped_samples", "Samples dropped from a full spool", health.dropped_samples_total),
            ("soak_agent_dropped_events", "Events dropped from a full spool", health.dropped_events_total),
            ("soak_agent_push_failures", "Pushes that did not reach the controller", health.push_failures_total),
        ):
            counter = CounterMetricFamily(name, documentation, labels=["node"])
            counter.add_metric([self._node], float(total))
            yield counter


def serve(values: LatestValues, *, host: str, port: int) -> WSGIServer:
    """Expose /metrics in a background thread; the server's `server_port` says where (0 asks for a free one)."""
    registry = CollectorRegistry()
    registry.register(values)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server

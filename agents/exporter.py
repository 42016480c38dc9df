"""The agent's /metrics on 127.0.0.1: the latest sample of every series, each collector's health, and delivery."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.exposition import family_of
from soak.nodes.schemas import DeviceIn

DEVICE_LABELS = ("node", "device", "index", "uuid", "vendor", "model", "campaign")


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
    """Holds the newest value per (metric, device) and counts events; yields fresh families at each scrape.

    Every device family carries the device's identity (index, uuid, vendor, model) and the campaign its worker
    last reported for, so that dashboards select by any of them; docs/metrics.md lists the families.
    """

    def __init__(self, node: str) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str | None], float] = {}
        self._identity: dict[str, dict[str, str]] = {}
        self._campaign: dict[str, str] = {}
        self._event_counts: Counter[tuple[str | None, str, str]] = Counter()
        self._xid_counts: Counter[tuple[str | None, int, str]] = Counter()
        self._collector_seconds: dict[str, float] = {}
        self._collector_up: dict[str, bool] = {}
        self._delivery = DeliveryHealth()

    def describe_devices(self, devices: list[DeviceIn]) -> None:
        """Remember the identity of the node's devices, for their labels."""
        with self._lock:
            for device in devices:
                self._identity[device.name] = {
                    "index": str(device.index),
                    "uuid": device.uuid or "",
                    "vendor": device.vendor,
                    "model": device.model,
                }

    def update(self, samples: list[dict[str, Any]], *, campaign_id: int | None = None) -> None:
        """Remember the newest values; samples a worker reported also say which campaign the device runs."""
        with self._lock:
            for sample in samples:
                device = sample.get("device")
                self._latest[(sample["metric"], device)] = float(sample["value"])
                if campaign_id is not None and device is not None:
                    self._campaign[device] = str(campaign_id)

    def count_events(self, events: list[dict[str, Any]]) -> None:
        """Count events by device, kind and severity, and NVIDIA XIDs by code: repeats stay visible."""
        with self._lock:
            for event in events:
                device, severity = event.get("device"), str(event.get("severity", "info"))
                self._event_counts[(device, str(event["kind"]), severity)] += 1
                if event["kind"] == "driver_error" and event.get("code") is not None:
                    self._xid_counts[(device, int(event["code"]), severity)] += 1

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
            events = dict(self._event_counts)
            xids = dict(self._xid_counts)
            seconds = dict(self._collector_seconds)
            up = dict(self._collector_up)
            delivery = self._delivery
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for (metric, device), value in sorted(latest.items(), key=lambda item: (item[0][0], item[0][1] or "")):
            family = family_of(metric)
            extra = sorted(family.labels)
            exposed = families.get(family.name)
            if exposed is None:
                family_type = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
                exposed = families[family.name] = family_type(family.name, family.help, labels=[*DEVICE_LABELS, *extra])
            exposed.add_metric([*self._device_labels(device), *(family.labels[k] for k in extra)], value * family.scale)
        yield from families.values()
        counted = CounterMetricFamily(
            "soak_device_events", "Events by kind and severity", labels=[*DEVICE_LABELS, "kind", "severity"]
        )
        for (device, kind, severity), count in sorted(events.items(), key=lambda item: (item[0][0] or "", item[0])):
            counted.add_metric([*self._device_labels(device), kind, severity], count)
        yield counted
        xid = CounterMetricFamily(
            "soak_device_xid_errors", "NVIDIA XID errors by code", labels=[*DEVICE_LABELS, "xid", "severity"]
        )
        for (device, code, severity), count in sorted(xids.items(), key=lambda item: (item[0][0] or "", item[0])):
            xid.add_metric([*self._device_labels(device), str(code), severity], count)
        yield xid
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

    def _device_labels(self, device: str | None) -> list[str]:
        if device is None:
            return [self._node, *[""] * (len(DEVICE_LABELS) - 1)]
        identity = self._identity.get(device, {})
        return [
            self._node,
            device,
            identity.get("index", ""),
            identity.get("uuid", ""),
            identity.get("vendor", ""),
            identity.get("model", ""),
            self._campaign.get(device, ""),
        ]

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

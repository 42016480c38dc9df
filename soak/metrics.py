"""The controller's own /metrics: ingest counters plus campaign and finding gauges read from the store."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from soak.campaigns.models import Campaign, CampaignState, WorkloadRun
from soak.findings.models import Finding
from soak.nodes.models import Device, Node
from soak.telemetry.schemas import IngestResult


class _StoreCollector(Collector):
    """Fresh gauges from the store at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        campaigns = GaugeMetricFamily("soak_campaigns", "Campaigns by state", labels=["state"])
        findings = GaugeMetricFamily(
            "soak_findings", "Findings of running campaigns by kind and severity", labels=["kind", "severity"]
        )
        onsets = GaugeMetricFamily(
            "soak_finding_onset_timestamp_seconds",
            "Each finding of a running campaign, by device, with its onset time; alert rules select on its labels",
            labels=["campaign", "node", "device", "kind", "subject", "severity"],
        )
        devices = GaugeMetricFamily("soak_devices_reserved", "Devices held by a campaign")
        running = GaugeMetricFamily("soak_devices_running", "Devices running a workload of a campaign now")
        with self._sessions() as session:
            counts = dict(session.execute(select(Campaign.state, func.count()).group_by(Campaign.state)).all())
            for state in CampaignState:
                campaigns.add_metric([state.value], float(counts.get(state.value, 0)))
            active = select(Campaign.id).where(Campaign.state.in_([CampaignState.RUNNING, CampaignState.PAUSED]))
            rows = session.execute(
                select(Finding.kind, Finding.severity, func.count())
                .where(Finding.campaign_id.in_(active))
                .group_by(Finding.kind, Finding.severity)
            ).all()
            for kind, severity, count in rows:
                findings.add_metric([kind, severity], float(count))
            # The campaign label is the campaign's id, as on the agents' device series, so the two join.
            located = session.execute(
                select(Finding, Device.name, Node.name)
                .outerjoin(Device, Finding.device_id == Device.id)
                .outerjoin(Node, Device.node_id == Node.id)
                .where(Finding.campaign_id.in_(active))
            ).all()
            for finding, device, node in located:
                labels = [str(finding.campaign_id), node or "", device or "", finding.kind, finding.subject]
                labels.append(finding.severity)
                onsets.add_metric(labels, finding.onset_s)
            reserved = session.scalar(select(func.count()).select_from(Device).where(Device.campaign_id.is_not(None)))
            devices.add_metric([], float(reserved or 0))
            busy = select(func.count(func.distinct(WorkloadRun.device_id))).where(
                WorkloadRun.campaign_id.in_(active), WorkloadRun.ended_s.is_(None)
            )
            running.add_metric([], float(session.scalar(busy) or 0))
        yield campaigns
        yield findings
        yield onsets
        yield devices
        yield running


class ControllerMetrics:
    """A registry of the controller's own; nothing global, so tests can build many apps."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self._samples = Counter("soak_samples_ingested", "Telemetry samples stored", registry=self.registry)
        self._events = Counter("soak_events_ingested", "Telemetry events stored", registry=self.registry)
        self._batches = Counter(
            "soak_batches_ingested", "Telemetry batches received", ["outcome"], registry=self.registry
        )
        self.registry.register(_StoreCollector(sessions))

    def record_ingest(self, result: IngestResult) -> None:
        """Count a batch and what it stored."""
        self._batches.labels("duplicate" if result.duplicate else "stored").inc()
        self._samples.inc(result.samples_stored)
        self._events.inc(result.events_stored)

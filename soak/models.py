"""Every table, imported in one place for Alembic and for creating a schema."""

from soak.auth.models import ApiToken, AuditEntry
from soak.campaigns.models import Campaign, WorkloadRun
from soak.db import Base
from soak.findings.models import Finding
from soak.nodes.models import Device, Node
from soak.telemetry.models import Event, IngestedBatch, MetricName, Sample
from soak.telemetry.rollup_models import HourRollup, MinuteRollup, RollupState

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Campaign",
    "Device",
    "Event",
    "Finding",
    "HourRollup",
    "IngestedBatch",
    "MetricName",
    "MinuteRollup",
    "Node",
    "RollupState",
    "Sample",
    "WorkloadRun",
]

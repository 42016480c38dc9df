"""Telemetry tables: metric names, the narrow sample table, driver/worker events, and ingested batch ids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, column_property, mapped_column

from soak.db import Base, BigId, UtcDateTime, utcnow


class MetricName(Base):
    """A metric's name, stored once: samples and rollups carry its id, four bytes instead of the name."""

    __tablename__ = "metric_name"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)


class Sample(Base):
    """One value of one metric at one time, for a device or (device_id NULL) for its node.

    On Postgres the table is partitioned by UTC day of time_s (soak/telemetry/partitions.py), so its primary key
    there is (id, time_s), as a partitioned table's key must hold the partition column; ids stay unique, handed out
    by one sequence. No foreign keys: checking three per row holds COPY to 78 k rows/s against 250 k without
    (docs/benchmarks.md), and ingest already resolves the node, its devices and the campaign once per batch.
    Nothing deletes campaigns, nodes or devices today; whatever comes to delete one must delete its samples too.
    The eight-byte columns come first, so that Postgres pads none: 40 bytes of data a row.
    """

    __tablename__ = "sample"
    __table_args__ = (
        Index("ix_sample_campaign_device_metric_time", "campaign_id", "device_id", "metric_id", "time_s"),
        # A few kilobytes for days of rows appended in time order; SQLite gets a B-tree (for its retention).
        Index("ix_sample_time", "time_s", postgresql_using="brin"),
        # SQLite would otherwise give the ids of deleted newest samples again, below the rollups' watermark.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    time_s: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    node_id: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[int | None] = mapped_column(Integer)
    metric_id: Mapped[int] = mapped_column(Integer)
    # The name, for reading and for filters outside hot paths (a subquery per row); queries on many rows join or
    # filter by metric_id (soak/telemetry/metric_names.py).
    metric: Mapped[str] = column_property(
        select(MetricName.name).where(MetricName.id == metric_id).correlate_except(MetricName).scalar_subquery()
    )


class Event(Base):
    """Something that happened: a driver error, a crash, a hang, a lost node; the raw text is kept."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_campaign_time", "campaign_id", "time_s"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    node_id: Mapped[int | None] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    time_s: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    code: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text, default="")


class IngestedBatch(Base):
    """A telemetry batch id already stored, so that a retried batch is stored once."""

    __tablename__ = "ingested_batch"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    samples: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)

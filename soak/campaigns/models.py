"""Campaign and workload-run tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from soak.db import Base, BigId, JsonDoc, UtcDateTime, utcnow


class CampaignState(StrEnum):
    """pending → running ⇄ paused → completed | stopped | failed."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Whether the campaign can no longer change."""
        return self in {CampaignState.COMPLETED, CampaignState.STOPPED, CampaignState.FAILED}


class CampaignCommand(StrEnum):
    """What a user asked the scheduler to do to a running campaign."""

    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"


class Campaign(Base):
    """One soak campaign: its plan, its state and its timeline."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    plan: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    plan_digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.PENDING, index=True)
    command: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    paused_s: Mapped[float] = mapped_column(Float, default=0.0)
    # Samples of this campaign at or below the rollup watermark, added by the rollup job as it reads them (raw
    # samples that retention removes stay counted); progress adds the few stored since.
    samples_rolled_up: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class WorkloadRun(Base):
    """One rotation slot: which workload ran on which device, when, and how it went."""

    __tablename__ = "workload_run"
    __table_args__ = (Index("ix_workload_run_campaign_device", "campaign_id", "device_id", "started_s"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    workload: Mapped[str] = mapped_column(String(64))
    started_s: Mapped[float] = mapped_column(Float)
    ended_s: Mapped[float | None] = mapped_column(Float, default=None)
    summary: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)

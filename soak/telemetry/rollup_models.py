"""Rollup tables: per device, metric and minute (or hour) the count, extremes, sum and last value of its samples."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from soak.db import Base


class Rollup(Base):
    """The samples of one device's metric whose time falls in [bucket_s, bucket_s + bucket_length_s).

    Device samples only: node-level samples (device_id NULL) are few and stay raw, and so do samples outside any
    campaign, which no series asks for.
    """

    __abstract__ = True
    bucket_length_s: ClassVar[int]

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metric_name.id"), primary_key=True)
    bucket_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    min_value: Mapped[float] = mapped_column(Float)
    max_value: Mapped[float] = mapped_column(Float)
    sum_value: Mapped[float] = mapped_column(Float)
    last_time_s: Mapped[float] = mapped_column(Float)
    last_value: Mapped[float] = mapped_column(Float)


class MinuteRollup(Rollup):
    """Samples per minute."""

    __tablename__ = "rollup_1m"
    bucket_length_s = 60


class HourRollup(Rollup):
    """Samples per hour."""

    __tablename__ = "rollup_1h"
    bucket_length_s = 3600


class RollupState(Base):
    """How far the rollups have read the sample table: every sample with id <= last_sample_id is in them."""

    __tablename__ = "rollup_state"

    input_table: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_sample_id: Mapped[int] = mapped_column(BigInteger)

"""Node and device tables: the fleet as agents report it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from soak.db import Base, UtcDateTime, utcnow


class Node(Base):
    """A machine running a soak agent."""

    __tablename__ = "node"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    agent_url: Mapped[str | None] = mapped_column(String(255), default=None)
    inbox_dir: Mapped[str] = mapped_column(String(1024))
    sim_state_dir: Mapped[str] = mapped_column(String(1024))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Device(Base):
    """One accelerator (or the CPU, or a simulated accelerator) on a node."""

    __tablename__ = "device"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    backend: Mapped[str] = mapped_column(String(32))
    index: Mapped[int] = mapped_column(Integer, default=0)
    vendor: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    uuid: Mapped[str | None] = mapped_column(String(128), default=None)
    serial: Mapped[str | None] = mapped_column(String(128), default=None)
    bus_id: Mapped[str | None] = mapped_column(String(64), default=None)
    driver_version: Mapped[str | None] = mapped_column(String(64), default=None)
    firmware_version: Mapped[str | None] = mapped_column(String(64), default=None)
    memory_total_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="SET NULL"), default=None, index=True
    )

"""Access tokens (stored as SHA-256 digests, never in the clear) and the audit log of actions taken with them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from soak.db import Base, BigId, UtcDateTime, utcnow


class Role(StrEnum):
    """What a token may do: operators everything, viewers read, agents register and push for their node only."""

    OPERATOR = "operator"
    VIEWER = "viewer"
    AGENT = "agent"


class ApiToken(Base):
    """A bearer token: its role, the node an agent token is bound to, and when it stops working."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    node: Mapped[str | None] = mapped_column(String(128), default=None)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class AuditEntry(Base):
    """Who (token and role) did what to which campaign, when, and whether it was allowed."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Tokens are revoked, never deleted, so the id keeps naming who acted; NULL: SOAK_API_TOKEN or no token.
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id"), default=None)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    # No foreign key: the trail of a campaign must outlive it, and a refused action may name one that never was.
    campaign_id: Mapped[int | None] = mapped_column(Integer, default=None)
    target: Mapped[str] = mapped_column(String(256), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")

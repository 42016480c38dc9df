"""Campaign API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict

from soak.errors import INT32_MAX

CampaignId = Annotated[int, Path(ge=1, le=INT32_MAX, description="the campaign's id")]


class CampaignOut(BaseModel):
    """A campaign as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    state: str
    command: str | None
    reason: str | None
    plan_digest: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    plan: dict[str, Any]


class CampaignProgress(BaseModel):
    """How far a campaign has come: what a follower polls."""

    campaign: CampaignOut
    elapsed_s: float
    remaining_s: float
    devices_running: int
    devices_reserved: int
    samples_stored: int
    events_stored: int
    findings: int

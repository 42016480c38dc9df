"""Finding API shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FindingOut(BaseModel):
    """A finding as users read it."""

    id: int
    campaign_id: int
    device: str | None
    kind: str
    subject: str
    severity: str
    onset_s: float
    detected_s: float
    last_seen_s: float
    explanation: str
    evidence: dict[str, Any]

"""Telemetry as it travels: worker reports, agent batches, and the ingest answer."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from soak.errors import INT32_MAX

METRIC_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
Severity = Literal["info", "warning", "critical"]


class SampleIn(BaseModel):
    """One value of one metric, for a device or (device omitted) for the node."""

    model_config = ConfigDict(extra="forbid")

    time_s: float = Field(gt=0, allow_inf_nan=False, description="epoch seconds")
    device: str | None = Field(default=None, pattern=NAME_PATTERN)
    metric: str = Field(pattern=METRIC_PATTERN, max_length=96)
    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number; drop the sample instead of sending NaN or infinity")
        return value


class EventIn(BaseModel):
    """A discrete occurrence: driver error, worker crash or hang, SDC, unsupported op."""

    model_config = ConfigDict(extra="forbid")

    time_s: float = Field(gt=0, allow_inf_nan=False, description="epoch seconds")
    device: str | None = Field(default=None, pattern=NAME_PATTERN)
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    severity: Severity = "info"
    code: int | None = Field(default=None, ge=-INT32_MAX - 1, le=INT32_MAX)
    message: str = Field(max_length=4000)
    raw: str = Field(default="", max_length=16000)


class TelemetryBatch(BaseModel):
    """What an agent sends: items are validated one by one so that one bad sample loses nothing else."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(pattern=r"^[A-Za-z0-9-]{8,64}$", description="client-chosen; a retry reuses it")
    node: str = Field(pattern=NAME_PATTERN)
    campaign_id: int | None = Field(default=None, ge=1, le=INT32_MAX)
    # Checked one by one in ingest (an item that is not even an object is refused alone); counts: SOAK_MAX_BATCH_*.
    samples: list[Any] = Field(default_factory=list, description="SampleIn items")
    events: list[Any] = Field(default_factory=list, description="EventIn items")


class TelemetryBatches(BaseModel):
    """Several batches in one request (cycles pushed together, a spool's backlog): each is stored once by its id."""

    model_config = ConfigDict(extra="forbid")

    # Checked one by one in ingest, so that one malformed batch is refused alone; count: SOAK_MAX_REQUEST_BATCHES,
    # items over all of them: SOAK_MAX_BATCH_SAMPLES and SOAK_MAX_BATCH_EVENTS.
    batches: list[Any] = Field(min_length=1, description="TelemetryBatch items, oldest first")


class Rejected(BaseModel):
    """An item of a batch that was not stored: its position in `samples` or `events`, the field, and why."""

    index: int
    field: str
    problem: str


class IngestResult(BaseModel):
    """How much of a batch was stored."""

    batch_id: str
    duplicate: bool
    samples_stored: int
    events_stored: int
    rejected: list[Rejected]


class BatchOutcome(BaseModel):
    """What became of one batch of a request: stored (with its rejected items), a duplicate, or refused whole."""

    batch_id: str | None = Field(description="None when the batch has no valid batch_id")
    duplicate: bool = False
    samples_stored: int = 0
    events_stored: int = 0
    rejected: list[Rejected] = Field(default_factory=list)
    refused: list[str] = Field(
        default_factory=list,
        description="why nothing of this batch was stored, each naming its field; the agent must not resend it",
    )


class IngestResults(BaseModel):
    """One outcome per batch of a request, in the request's order."""

    results: list[BatchOutcome]

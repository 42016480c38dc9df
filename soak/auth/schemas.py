"""Token and audit API shapes, and the principal a request acts as."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from soak.auth.models import Role
from soak.telemetry.schemas import NAME_PATTERN

TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/ -]{0,63}$"
BOOTSTRAP_NAME = "SOAK_API_TOKEN"


class Outcome(StrEnum):
    """How an audited action ended."""

    OK = "ok"
    REFUSED = "refused"
    CONFLICT = "conflict"


class Principal(BaseModel):
    """Who a request acts as: a stored token, or the bootstrap SOAK_API_TOKEN (token_id None)."""

    model_config = ConfigDict(frozen=True)

    token_id: int | None
    name: str
    role: Role
    node: str | None = None

    def may_act_for(self, node: str) -> bool:
        """Operators act for every node; an agent token only for the node it was issued to."""
        return self.role is Role.OPERATOR or (self.role is Role.AGENT and self.node == node)


class TokenIn(BaseModel):
    """A token to issue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOKEN_NAME_PATTERN, description="who or what holds it, e.g. alice or gpu-07 agent")
    role: Role
    node: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        validate_default=True,
        description="agent tokens: the node it registers and pushes for",
    )
    expires_in_days: float | None = Field(default=None, gt=0, le=3650, description="never expires when omitted")

    @field_validator("node")
    @classmethod
    def _node_for_agents_only(cls, node: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")
        if role is Role.AGENT and node is None:
            raise ValueError("an agent token is bound to one node; name it")
        if role is not None and role is not Role.AGENT and node is not None:
            raise ValueError(f"only agent tokens are bound to a node; leave it out for a {role} token")
        return node


class TokenOut(BaseModel):
    """A token as listed: never its secret, which is shown once when it is created."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    node: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """A new token with its secret: store it now, it cannot be shown again."""

    token: str


class AuditOut(BaseModel):
    """One audit log entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    token_id: int | None
    actor: str
    role: str
    action: str
    campaign_id: int | None
    target: str
    outcome: str
    detail: str

"""Issuing, checking and revoking tokens; writing and reading the audit log."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from soak.auth.models import ApiToken, AuditEntry, Role
from soak.auth.schemas import BOOTSTRAP_NAME, Outcome, Principal, TokenIn
from soak.db import utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "soak_"
AUDIT_LIMIT = 1000


class TokenNotFound(LookupError):
    """No token with that id."""


def digest(secret: str) -> str:
    """The SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A fresh token: 256 random bits, prefixed so that secret scanners recognise a leaked one."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(*, session: Session, token_in: TokenIn) -> tuple[ApiToken, str]:
    """Store a new token's digest; returns the row and the secret, which nothing can show again."""
    secret = new_secret()
    expires_at = utcnow() + timedelta(days=token_in.expires_in_days) if token_in.expires_in_days else None
    token = ApiToken(
        name=token_in.name,
        role=token_in.role.value,
        node=token_in.node,
        digest=digest(secret),
        expires_at=expires_at,
    )
    session.add(token)
    session.commit()
    return token, secret


def list_tokens(*, session: Session) -> list[ApiToken]:
    """Every token ever issued, revoked and expired ones too, oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(*, session: Session, token_id: int) -> ApiToken:
    """Revoke a token at once (revoking twice keeps the first time)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise TokenNotFound(f"token {token_id} does not exist; `soak token list` shows the ids")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.commit()
    return token


def is_active(token: ApiToken, now: datetime) -> bool:
    """Neither revoked nor expired."""
    return token.revoked_at is None and (token.expires_at is None or token.expires_at > now)


def authenticate(*, session: Session, secret: str, bootstrap_token: str | None) -> Principal | None:
    """The principal a bearer secret stands for, or None for an unknown, revoked or expired one."""
    if bootstrap_token is not None and secrets.compare_digest(secret.encode(), bootstrap_token.encode()):
        return Principal(token_id=None, name=BOOTSTRAP_NAME, role=Role.OPERATOR)
    # Looked up by digest: equal digests mean equal secrets, and the digest of a guess tells nothing of a token.
    token = session.scalar(select(ApiToken).where(ApiToken.digest == digest(secret)))
    if token is None or not is_active(token, utcnow()):
        return None
    return Principal(token_id=token.id, name=token.name, role=Role(token.role), node=token.node)


def has_operator_token(*, session: Session) -> bool:
    """Whether an active operator token exists, so that someone can administer a production controller."""
    operators = session.scalars(select(ApiToken).where(ApiToken.role == Role.OPERATOR.value))
    now = utcnow()
    return any(is_active(token, now) for token in operators)


def record(
    *,
    session: Session,
    principal: Principal | None,
    action: str,
    outcome: Outcome,
    campaign_id: int | None = None,
    target: str = "",
    detail: str = "",
) -> None:
    """Append an entry to the audit log (committed at once); refusals are logged as warnings too."""
    if outcome is Outcome.REFUSED:
        who = "no token" if principal is None else f"{principal.role} token {principal.name!r}"
        log.warning("refused %s on %s for %s: %s", action, target or campaign_id, who, detail)
    session.add(
        AuditEntry(
            token_id=principal.token_id if principal else None,
            actor=principal.name if principal else "(none)",
            role=principal.role.value if principal else "(none)",
            action=action[:64],
            campaign_id=campaign_id,
            target=target[:256],
            outcome=outcome.value,
            detail=detail,
        )
    )
    session.commit()


def audit_entries(*, session: Session, campaign_id: int | None, limit: int = AUDIT_LIMIT) -> list[AuditEntry]:
    """The audit log oldest first: one campaign's entries, or every entry when campaign_id is None."""
    statement = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if campaign_id is not None:
        statement = statement.where(AuditEntry.campaign_id == campaign_id)
    # The newest `limit` entries, returned oldest first.
    return list(session.scalars(statement))[::-1]

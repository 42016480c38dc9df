"""Token administration (operators) and the audit log (viewers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from soak.auth import service
from soak.auth.schemas import AuditOut, Outcome, TokenCreated, TokenIn, TokenOut
from soak.deps import ERRORS, Operator, OperatorDep, SessionDep, Viewer
from soak.errors import INT32_MAX

router = APIRouter(prefix="/api/v1", tags=["auth"], responses=ERRORS)
Limit = Annotated[int, Query(ge=1, le=10_000, description="the newest entries, returned oldest first")]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(session: SessionDep, principal: OperatorDep, token_in: TokenIn) -> TokenCreated:
    """Issue a token; its secret is in this answer only (the store keeps a digest)."""
    token, secret = service.create_token(session=session, token_in=token_in)
    service.record(
        session=session,
        principal=principal,
        action="token.create",
        outcome=Outcome.OK,
        target=f"token {token.id} ({token.role}{f' for node {token.node}' if token.node else ''})",
    )
    return TokenCreated.model_validate({**TokenOut.model_validate(token).model_dump(), "token": secret})


@router.get("/tokens", dependencies=[Operator])
def list_tokens(session: SessionDep) -> list[TokenOut]:
    """Every token issued, without secrets."""
    return [TokenOut.model_validate(token) for token in service.list_tokens(session=session)]


@router.delete("/tokens/{token_id}")
def revoke_token(
    session: SessionDep, principal: OperatorDep, token_id: Annotated[int, Path(ge=1, le=INT32_MAX)]
) -> TokenOut:
    """Revoke a token: it is refused from the next request on."""
    try:
        token = service.revoke_token(session=session, token_id=token_id)
    except service.TokenNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    service.record(
        session=session, principal=principal, action="token.revoke", outcome=Outcome.OK, target=f"token {token_id}"
    )
    return TokenOut.model_validate(token)


@router.get("/audit", dependencies=[Viewer])
def audit_log(
    session: SessionDep,
    limit: Limit = 1000,
    campaign_id: Annotated[int | None, Query(ge=1, le=INT32_MAX, description="one campaign's entries")] = None,
) -> list[AuditOut]:
    """Who did what, when, and whether it was allowed: campaign actions, token changes, refusals."""
    entries = service.audit_entries(session=session, campaign_id=campaign_id, limit=limit)
    return [AuditOut.model_validate(entry) for entry in entries]

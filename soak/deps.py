"""FastAPI dependencies: settings, sessions, and who a request acts as, with one dependency per role.

Routers guard each route where they define it: `dependencies=[Operator]` or `[Viewer]`, `principal: OperatorDep`
where the view records who acted, `node: AgentNode` for routes an agent calls for its own node (`{name}` in the
path), and check_node() where the node comes in the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from soak.auth import service as auth
from soak.auth.models import Role
from soak.auth.schemas import Outcome, Principal
from soak.config import Settings
from soak.errors import INT32_MAX, ErrorOut, ProblemsOut
from soak.telemetry.schemas import NAME_PATTERN

_bearer = HTTPBearer(auto_error=False)


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, closed on the event loop as soon as the endpoint returns (see SessionDep)."""
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
# Closed before the response goes out, so a client slow to read it holds no database connection; and on the event
# loop, not in the worker-thread pool: were every thread waiting for a connection, the sessions holding them could
# never close, and the controller would stall until the pool's checkout timeout (seen at 100 nodes, 200 reads/s).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_principal(session: SessionDep, settings: SettingsDep, credentials: Credentials) -> Principal | None:
    """The token's principal; None without a token; 401 for a token that is unknown, revoked or expired."""
    if credentials is None:
        return None
    principal = auth.authenticate(session=session, secret=credentials.credentials, bootstrap_token=settings.api_token)
    if principal is None:
        raise _unauthenticated("the bearer token is unknown, revoked or expired")
    return principal


PrincipalDep = Annotated[Principal | None, Depends(get_principal)]


def _unauthenticated(why: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        f"{why}: a valid bearer token is required, sent as 'Authorization: Bearer <token>' "
        "(an operator issues one with `soak token create`)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _campaign_in_path(request: Request) -> int | None:
    text = str(request.path_params.get("campaign_id", ""))
    return int(text) if text.isdigit() and int(text) <= INT32_MAX else None


def refuse(*, request: Request, session: Session, principal: Principal | None, why: str) -> HTTPException:
    """401 without a token; otherwise 403, written to the audit log and the log, so that a probing token shows."""
    if principal is None:
        return _unauthenticated("no token")
    auth.record(
        session=session,
        principal=principal,
        action=f"{request.method} {request.url.path}",
        outcome=Outcome.REFUSED,
        campaign_id=_campaign_in_path(request),
        target=request.url.path,
        detail=why,
    )
    return HTTPException(status.HTTP_403_FORBIDDEN, f"a {principal.role} token may not do this: {why}")


def require_operator(request: Request, session: SessionDep, principal: PrincipalDep) -> Principal:
    """Operators only: campaigns, tokens."""
    if principal is not None and principal.role is Role.OPERATOR:
        return principal
    raise refuse(request=request, session=session, principal=principal, why="it needs an operator token")


def require_viewer(
    request: Request, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> Principal | None:
    """Operators and viewers read; in development and demo mode reads are open to anyone."""
    if settings.reads_open or (principal is not None and principal.role in (Role.OPERATOR, Role.VIEWER)):
        return principal
    raise refuse(request=request, session=session, principal=principal, why="reading needs a viewer token")


def require_ingest(request: Request, session: SessionDep, principal: PrincipalDep) -> Principal:
    """Agents (for their own node, see check_node) and operators push telemetry and register nodes."""
    if principal is not None and principal.role in (Role.OPERATOR, Role.AGENT):
        return principal
    raise refuse(request=request, session=session, principal=principal, why="it needs an agent token")


IngestDep = Annotated[Principal, Depends(require_ingest)]
OperatorDep = Annotated[Principal, Depends(require_operator)]


def check_node(*, request: Request, session: Session, principal: Principal, node: str) -> None:
    """Refuse (403, audited) an agent token acting for a node other than the one it was issued to."""
    if not principal.may_act_for(node):
        raise refuse(
            request=request,
            session=session,
            principal=principal,
            why=f"node: the token was issued to node {principal.node!r}, not {node!r}",
        )


def agent_node(
    request: Request, session: SessionDep, principal: IngestDep, name: Annotated[str, Path(pattern=NAME_PATTERN)]
) -> str:
    """The `{name}` node of the path, once the token is allowed to act for it."""
    check_node(request=request, session=session, principal=principal, node=name)
    return name


AgentNode = Annotated[str, Depends(agent_node)]
Operator = Depends(require_operator)
Viewer = Depends(require_viewer)
# What every guarded router may answer besides its own success (documented, so that clients can rely on them).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body cannot be parsed"},
    401: {"model": ErrorOut, "description": "no token, or one unknown, revoked or expired"},
    403: {"model": ErrorOut, "description": "the token's role may not do this"},
    404: {"model": ErrorOut, "description": "no such resource"},
    409: {"model": ErrorOut, "description": "conflicts with the resource's state"},
    413: {"model": ErrorOut, "description": "the body is larger than SOAK_MAX_BODY_BYTES"},
    422: {"model": ProblemsOut, "description": "invalid request; each problem names its field"},
}

"""FastAPI dependencies: settings, sessions, and the bearer token that guards writes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from soak.config import Settings

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


def _check(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    expected = settings.api_token
    if expected is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "writes are disabled: start the controller with SOAK_API_TOKEN")
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required: send 'Authorization: Bearer $SOAK_API_TOKEN'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_writer(settings: SettingsDep, credentials: Credentials) -> None:
    """Writes always need the token."""
    _check(settings, credentials)


def require_reader(settings: SettingsDep, credentials: Credentials) -> None:
    """Reads need the token in production; they are open in development and demo mode."""
    if not settings.reads_open:
        _check(settings, credentials)


Writer = Depends(require_writer)
Reader = Depends(require_reader)

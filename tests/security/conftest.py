"""A production controller whose store holds a token of every kind, agents bound to node-a and node-b."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from soak.api import create_app
from soak.auth.models import ApiToken, Role
from soak.auth.schemas import TokenIn
from soak.auth.service import create_token, revoke_token
from soak.config import Settings
from soak.db import make_engine, session_factory, utcnow


def bearer(secret: str) -> dict[str, str]:
    """The header that carries a token."""
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def store_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """A migrated SQLite store of this test's own (token checks do not differ between backends)."""
    path = tmp_path / "soak.db"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite:///{path}"


@pytest.fixture
def tokens(store_url: str) -> dict[str, str]:
    """Secrets by kind: operator, viewer, agent-a, agent-b, revoked, expired (token 1 is a spare one to revoke)."""
    engine = make_engine(store_url)
    made: dict[str, str] = {}
    with session_factory(engine)() as session:
        for kind, token_in in [
            ("spare", TokenIn(name="spare", role=Role.VIEWER)),
            ("operator", TokenIn(name="alice", role=Role.OPERATOR)),
            ("viewer", TokenIn(name="procurement", role=Role.VIEWER)),
            ("agent-a", TokenIn(name="agent a", role=Role.AGENT, node="node-a")),
            ("agent-b", TokenIn(name="agent b", role=Role.AGENT, node="node-b")),
            ("revoked", TokenIn(name="left the team", role=Role.OPERATOR)),
            ("expired", TokenIn(name="contractor", role=Role.OPERATOR, expires_in_days=1)),
        ]:
            token, made[kind] = create_token(session=session, token_in=token_in)
            if kind == "revoked":
                revoke_token(session=session, token_id=token.id)
            if kind == "expired":
                expired = session.get(ApiToken, token.id)
                assert expired is not None
                expired.expires_at = utcnow() - timedelta(seconds=1)
                session.commit()
    engine.dispose()
    return made


@pytest.fixture
def secured(store_url: str, tokens: dict[str, str]) -> Iterator[TestClient]:
    """The controller in production mode with no SOAK_API_TOKEN: only the store's tokens open it."""
    settings = Settings(database_url=store_url, environment="production")
    with TestClient(create_app(settings, run_scheduler=False)) as client:
        yield client

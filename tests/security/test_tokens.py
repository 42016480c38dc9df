"""Tokens from the command line (stored as digests, revocable), production's start checks, and the audit log."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from soak.api import create_app
from soak.auth.models import Role
from soak.auth.schemas import Outcome, TokenIn
from soak.auth.service import audit_entries, authenticate, create_token, record, revoke_token
from soak.cli import app
from soak.config import Settings, get_settings, new_token
from soak.db import make_engine, session_factory
from soak.security import ProductionUnready
from tests.security.conftest import bearer

SECRET = re.compile(r"soak_[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The CLI reads SOAK_DATABASE_URL through the cached settings: each invocation here sets its own."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def soak(store_url: str, *args: str) -> Any:
    get_settings.cache_clear()
    return CliRunner().invoke(app, list(args), env={"SOAK_DATABASE_URL": store_url}, terminal_width=200)


def test_a_token_is_printed_once_stored_as_a_digest_and_stops_working_when_revoked(store_url: str) -> None:
    created = soak(store_url, "token", "create", "--role", "agent", "--node", "gpu-07")
    [secret] = SECRET.findall(created.output)
    listed = soak(store_url, "token", "list")

    assert created.exit_code == 0 and "agent gpu-07" in created.output
    assert secret not in listed.output and "gpu-07" in listed.output and "active" in listed.output
    store = Path(store_url.removeprefix("sqlite:///")).read_bytes()
    assert secret.encode() not in store
    settings = Settings(database_url=store_url, environment="development")
    with TestClient(create_app(settings, run_scheduler=False)) as client:
        register = {"hostname": "gpu-07", "inbox_dir": "/in", "sim_state_dir": "/sim"}
        assert client.put("/api/v1/nodes/gpu-07", json=register, headers=bearer(secret)).status_code == 200
        token_id = SECRET.sub("", created.output).split()[1]
        assert soak(store_url, "token", "revoke", token_id).exit_code == 0
        assert client.put("/api/v1/nodes/gpu-07", json=register, headers=bearer(secret)).status_code == 401
    assert "revoked" in soak(store_url, "token", "list").output


def test_token_create_names_the_option_at_fault(store_url: str) -> None:
    result = soak(store_url, "token", "create", "--role", "agent")

    assert result.exit_code == 2
    assert "--node: " in result.output and "agent token is bound to one node" in result.output


def test_production_refuses_to_start_without_an_operator_token(store_url: str) -> None:
    with pytest.raises(ProductionUnready, match="soak token create --role operator"):
        create_app(Settings(database_url=store_url, environment="production"), run_scheduler=False)

    soak(store_url, "token", "create", "--role", "viewer")
    with pytest.raises(ProductionUnready):
        create_app(Settings(database_url=store_url, environment="production"), run_scheduler=False)

    soak(store_url, "token", "create", "--role", "operator", "--name", "alice")
    create_app(Settings(database_url=store_url, environment="production"), run_scheduler=False)


@pytest.mark.parametrize(
    "token",
    ["short", "changeme-changeme-changeme-changeme", "a" * 40, pytest.param("demo-" + new_token(), id="demo-prefixed")],
)
def test_production_refuses_a_weak_or_placeholder_bootstrap_token(token: str) -> None:
    with pytest.raises(ValidationError, match="SOAK_API_TOKEN is too weak for production"):
        Settings(environment="production", api_token=token)

    Settings(environment="demo", api_token=token)


def test_serve_says_why_production_cannot_start(store_url: str) -> None:
    env = {"SOAK_DATABASE_URL": store_url, "SOAK_ENVIRONMENT": "production"}
    result = CliRunner().invoke(app, ["serve"], env=env, terminal_width=200)

    assert result.exit_code == 2
    assert "production mode needs an operator token" in result.output


def test_campaign_actions_are_in_the_audit_log_with_who_what_and_when(
    secured: TestClient, tokens: dict[str, str], plan_data: dict[str, Any], store_url: str
) -> None:
    operator, viewer = bearer(tokens["operator"]), bearer(tokens["viewer"])
    campaign_id = secured.post("/api/v1/campaigns", json=plan_data, headers=operator).json()["id"]
    secured.post(f"/api/v1/campaigns/{campaign_id}/stop", headers=operator)
    secured.post(f"/api/v1/campaigns/{campaign_id}/stop", headers=operator)
    secured.post(f"/api/v1/campaigns/{campaign_id}/pause", headers=viewer)
    secured.post("/api/v1/tokens", json={"name": "bob", "role": "viewer"}, headers=operator)

    trail = secured.get(f"/api/v1/audit?campaign_id={campaign_id}", headers=viewer).json()
    everything = secured.get("/api/v1/audit", headers=viewer).json()

    assert [(e["actor"], e["role"], e["action"], e["outcome"]) for e in trail] == [
        ("alice", "operator", "campaign.create", "ok"),
        ("alice", "operator", "campaign.stop", "ok"),
        ("alice", "operator", "campaign.stop", "conflict"),
        ("procurement", "viewer", f"POST /api/v1/campaigns/{campaign_id}/pause", "refused"),
    ]
    assert all(e["at"] and e["token_id"] for e in trail)
    assert everything[-1]["action"] == "token.create" and everything[-1]["campaign_id"] is None
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        # What reports read: the same trail, oldest first.
        assert [entry.id for entry in audit_entries(session=session, campaign_id=campaign_id)] == [
            e["id"] for e in trail
        ]
    engine.dispose()
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as connection:
        assert connection.execute("SELECT count(*) FROM api_token WHERE digest LIKE 'soak_%'").fetchone() == (0,)


def test_tokens_and_the_audit_log_on_each_backend(session: Session) -> None:
    token, secret = create_token(session=session, token_in=TokenIn(name="gpu-07 agent", role=Role.AGENT, node="gpu-07"))
    principal = authenticate(session=session, secret=secret, bootstrap_token=None)
    assert principal is not None
    record(session=session, principal=principal, action="campaign.stop", outcome=Outcome.REFUSED, campaign_id=3)

    assert (principal.token_id, principal.role, principal.node) == (token.id, Role.AGENT, "gpu-07")
    assert authenticate(session=session, secret=secret + "x", bootstrap_token=None) is None
    [entry] = audit_entries(session=session, campaign_id=3)
    assert (entry.token_id, entry.actor, entry.outcome) == (token.id, "gpu-07 agent", "refused")
    assert entry.at.tzinfo is not None
    revoke_token(session=session, token_id=token.id)
    assert authenticate(session=session, secret=secret, bootstrap_token=None) is None

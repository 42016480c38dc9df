"""Every route of the app against every kind of token: a route without a rule here fails the first test."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from soak.api import create_app
from soak.config import Settings
from tests.security.conftest import bearer

# Who may call each route. public: anyone; viewer: operators and viewers; operator: operators only;
# agent: operators, and agent tokens acting for their own node (node-a in these requests).
RULES = {
    ("GET", "/healthz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/api/v1/campaigns"): "viewer",
    ("GET", "/api/v1/campaigns/{campaign_id}"): "viewer",
    ("GET", "/api/v1/campaigns/{campaign_id}/findings"): "viewer",
    ("GET", "/api/v1/campaigns/{campaign_id}/events"): "viewer",
    ("GET", "/api/v1/campaigns/{campaign_id}/series"): "viewer",
    # A read of what the store holds, unsigned; signed report directories are written by `soak report` on the
    # controller's host, where the signing key is.
    ("GET", "/api/v1/campaigns/{campaign_id}/report.{report_format}"): "viewer",
    ("GET", "/api/v1/nodes"): "viewer",
    ("GET", "/api/v1/devices"): "viewer",
    ("GET", "/api/v1/cluster"): "viewer",
    ("GET", "/api/v1/audit"): "viewer",
    ("POST", "/api/v1/campaigns"): "operator",
    ("POST", "/api/v1/campaigns/{campaign_id}/{command}"): "operator",
    ("POST", "/api/v1/tokens"): "operator",
    ("GET", "/api/v1/tokens"): "operator",
    ("DELETE", "/api/v1/tokens/{token_id}"): "operator",
    ("PUT", "/api/v1/nodes/{name}"): "agent",
    ("POST", "/api/v1/telemetry"): "agent",
    ("POST", "/api/v1/telemetry/batches"): "agent",
}
KINDS = [None, "operator", "viewer", "agent-a", "agent-b", "revoked", "expired", "forged"]
ALLOWED = {
    "public": set(KINDS),
    "viewer": {"operator", "viewer"},
    "operator": {"operator"},
    "agent": {"operator", "agent-a"},
}
PATH_VALUES = {"campaign_id": "1", "command": "stop", "name": "node-a", "token_id": "1", "report_format": "json"}
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/nodes/{name}"): {"hostname": "a", "inbox_dir": "/in", "sim_state_dir": "/sim"},
    ("POST", "/api/v1/telemetry"): {"batch_id": "batch-0001", "node": "node-a"},
    ("POST", "/api/v1/telemetry/batches"): {"batches": [{"batch_id": "batch-0002", "node": "node-a"}]},
    ("POST", "/api/v1/tokens"): {"name": "new", "role": "viewer"},
    ("POST", "/api/v1/campaigns"): {"name": "not a whole plan"},
}


def app_routes() -> set[tuple[str, str]]:
    """Every operation the app serves, as its OpenAPI document lists them (built from its routes)."""
    document = create_app(Settings(database_url="sqlite://"), run_scheduler=False).openapi()
    return {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}


def test_every_route_has_a_rule() -> None:
    routes = app_routes()

    assert routes - RULES.keys() == set(), "new routes need a rule in RULES (and a role dependency)"
    assert RULES.keys() - routes == set(), "RULES names routes the app no longer has"


@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_each_token_is_allowed_exactly_what_its_role_may_do(
    secured: TestClient, tokens: dict[str, str], method: str, path: str
) -> None:
    url = path.format(**PATH_VALUES)
    allowed = ALLOWED[RULES[method, path]]
    for kind in KINDS:
        headers = {} if kind is None else bearer(tokens.get(kind, "soak_forged-0123456789abcdefghijklmnopqrstuvwxyz"))
        response = secured.request(method, url, headers=headers, json=BODIES.get((method, path)))

        if kind in allowed:
            assert response.status_code not in (401, 403), (kind, response.text)
        elif kind in (None, "revoked", "expired", "forged"):
            assert response.status_code == 401, (kind, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
        else:
            assert response.status_code == 403, (kind, response.text)


def test_reads_are_open_in_development_and_writes_are_not(store_url: str, tokens: dict[str, str]) -> None:
    settings = Settings(database_url=store_url, environment="development")
    with TestClient(create_app(settings, run_scheduler=False)) as client:
        assert client.get("/api/v1/campaigns").status_code == 200
        assert client.get("/api/v1/audit").status_code == 200
        assert client.post("/api/v1/campaigns/1/stop").status_code == 401
        assert client.post("/api/v1/campaigns/1/stop", headers=bearer(tokens["agent-a"])).status_code == 403
        assert client.get("/api/v1/tokens", headers=bearer(tokens["viewer"])).status_code == 403

"""An agent token acts for the node it was issued to and for nothing else; each refusal is audited and logged."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.security.conftest import bearer

DEVICES = {"node-a": "sim0", "node-b": "sim1"}


def batch(node: str, *, batch_id: str | None = None, value: float = 1.0) -> dict[str, Any]:
    """One power sample of the node's device."""
    sample = {"time_s": time.time(), "device": DEVICES[node], "metric": "device.power_w", "value": value}
    return {"batch_id": batch_id or uuid.uuid4().hex, "node": node, "samples": [sample]}


@pytest.fixture
def registered(secured: TestClient, tokens: dict[str, str], node_payload: Callable[..., dict[str, Any]]) -> TestClient:
    """node-a and node-b registered by their own agents."""
    for node, device in DEVICES.items():
        response = secured.put(
            f"/api/v1/nodes/{node}", json=node_payload(node, [device]), headers=bearer(tokens[f"agent-{node[-1]}"])
        )
        assert response.status_code == 200, response.text
    return secured


def audit(client: TestClient, tokens: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit", headers=bearer(tokens["viewer"]))
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_an_agent_pushes_for_its_own_node(registered: TestClient, tokens: dict[str, str]) -> None:
    response = registered.post("/api/v1/telemetry", json=batch("node-a"), headers=bearer(tokens["agent-a"]))

    assert response.status_code == 200 and response.json()["samples_stored"] == 1, response.text


def test_telemetry_forged_for_another_node_is_refused_audited_and_logged(
    registered: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    forged = batch("node-b", value=999.0)

    with caplog.at_level(logging.WARNING, logger="soak.auth.service"):
        response = registered.post("/api/v1/telemetry", json=forged, headers=bearer(tokens["agent-a"]))

    assert response.status_code == 403
    assert "node-a" in response.json()["detail"] and "node-b" in response.json()["detail"]
    # Nothing was stored under node-b: its own agent's batch with the same id is stored, not taken for a retry.
    genuine = registered.post(
        "/api/v1/telemetry", json={**forged, "samples": batch("node-b")["samples"]}, headers=bearer(tokens["agent-b"])
    )
    assert genuine.json()["samples_stored"] == 1 and not genuine.json()["duplicate"]
    [entry] = [e for e in audit(registered, tokens) if e["outcome"] == "refused"]
    assert (entry["actor"], entry["role"], entry["action"]) == ("agent a", "agent", "POST /api/v1/telemetry")
    assert "node-b" in entry["detail"]
    assert any("refused POST /api/v1/telemetry" in record.getMessage() for record in caplog.records)


def test_a_batch_for_another_node_among_its_own_refuses_the_whole_request(
    registered: TestClient, tokens: dict[str, str]
) -> None:
    own, forged = batch("node-a"), batch("node-b", value=999.0)

    response = registered.post(
        "/api/v1/telemetry/batches", json={"batches": [own, forged]}, headers=bearer(tokens["agent-a"])
    )

    assert response.status_code == 403 and "node-b" in response.json()["detail"]
    # Nothing of the request was stored: the node's own batch goes through when sent again alone.
    again = registered.post("/api/v1/telemetry", json=own, headers=bearer(tokens["agent-a"]))
    assert again.json()["samples_stored"] == 1 and not again.json()["duplicate"]
    [entry] = [e for e in audit(registered, tokens) if e["outcome"] == "refused"]
    assert entry["action"] == "POST /api/v1/telemetry/batches"


def test_an_agent_cannot_register_another_node_or_stop_a_campaign(
    registered: TestClient,
    tokens: dict[str, str],
    node_payload: Callable[..., dict[str, Any]],
    plan_data: dict[str, Any],
) -> None:
    campaign = registered.post("/api/v1/campaigns", json=plan_data, headers=bearer(tokens["operator"])).json()

    takeover = registered.put(
        "/api/v1/nodes/node-b",
        json=node_payload("node-b", ["sim1"], hostname="evil"),
        headers=bearer(tokens["agent-a"]),
    )
    stop = registered.post(f"/api/v1/campaigns/{campaign['id']}/stop", headers=bearer(tokens["agent-a"]))

    assert (takeover.status_code, stop.status_code) == (403, 403)
    nodes = registered.get("/api/v1/nodes", headers=bearer(tokens["viewer"])).json()
    assert {node["name"]: node["hostname"] for node in nodes}["node-b"] == "node-b.example.internal"
    state = registered.get(f"/api/v1/campaigns/{campaign['id']}", headers=bearer(tokens["viewer"])).json()
    assert state["campaign"]["state"] == "pending"
    refused = [(e["action"], e["campaign_id"]) for e in audit(registered, tokens) if e["outcome"] == "refused"]
    assert refused == [
        ("PUT /api/v1/nodes/node-b", None),
        (f"POST /api/v1/campaigns/{campaign['id']}/stop", campaign["id"]),
    ]


def test_a_node_cannot_claim_another_nodes_batch_ids_ahead_of_it(
    registered: TestClient, tokens: dict[str, str]
) -> None:
    batch_id = uuid.uuid4().hex
    registered.post("/api/v1/telemetry", json=batch("node-a", batch_id=batch_id), headers=bearer(tokens["agent-a"]))

    response = registered.post(
        "/api/v1/telemetry", json=batch("node-b", batch_id=batch_id), headers=bearer(tokens["agent-b"])
    )

    # Not answered as a duplicate (the agent would drop it as delivered): refused, so the agent keeps it.
    assert response.status_code == 422 and "batch_id" in response.json()["detail"], response.text

"""Several batches in one request: each stored once by its own id, each refused or answered on its own."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from soak.telemetry.models import Event, IngestedBatch, Sample

TELEMETRY = "/api/v1/telemetry"
BATCHES = "/api/v1/telemetry/batches"
NOW_S = 1_795_000_000.0


@pytest.fixture
def node(register: Callable[..., httpx.Response]) -> str:
    """A registered node `n1` with two simulated devices."""
    assert register("n1", ["sim0", "sim1"]).status_code == 200
    return "n1"


def batch(second: int, **fields: Any) -> dict[str, Any]:
    """One second of the node: a sample of each device."""
    samples = [
        {"time_s": NOW_S + second, "device": device, "metric": "device.power_w", "value": 300.0 + second}
        for device in ("sim0", "sim1")
    ]
    return {"batch_id": str(uuid.uuid4()), "node": "n1", "samples": samples, "events": [], **fields}


def count(engine: Engine, table: type[Sample] | type[Event] | type[IngestedBatch]) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def stored(result: dict[str, Any]) -> tuple[bool, int]:
    return result["duplicate"], result["samples_stored"]


def test_a_replayed_request_stores_only_the_batches_not_stored_before(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    first, second, third = batch(0), batch(1), batch(2)
    # The first batch went alone before (an older agent, or a request whose answer was lost).
    assert client.post(TELEMETRY, json=first, headers=auth).json()["samples_stored"] == 2

    response = client.post(BATCHES, json={"batches": [first, second, third]}, headers=auth)
    replay = client.post(BATCHES, json={"batches": [first, second, third, batch(3)]}, headers=auth)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["batch_id"] for r in results] == [first["batch_id"], second["batch_id"], third["batch_id"]]
    assert [stored(r) for r in results] == [(True, 0), (False, 2), (False, 2)]
    assert [stored(r) for r in replay.json()["results"]] == [(True, 0), (True, 0), (True, 0), (False, 2)]
    assert count(engine, Sample) == 8
    assert count(engine, IngestedBatch) == 4


def test_a_batch_id_twice_in_one_request_is_stored_once(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    twice = batch(0)

    response = client.post(BATCHES, json={"batches": [twice, twice]}, headers=auth)

    assert [stored(r) for r in response.json()["results"]] == [(False, 2), (True, 0)]
    assert count(engine, Sample) == 2


def test_a_bad_batch_is_refused_alone_and_rejections_name_items_of_their_own_batch(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    malformed = batch(0, batch_id="no")
    unknown_campaign = batch(1, campaign_id=999)
    mixed = batch(2)
    mixed["samples"][1]["value"] = "hot"
    mixed["events"] = [{"time_s": NOW_S, "device": "sim7", "kind": "driver_error", "message": "Xid 79"}]
    clean = batch(3)

    response = client.post(BATCHES, json={"batches": [malformed, unknown_campaign, mixed, clean]}, headers=auth)

    assert response.status_code == 200, response.text
    malformed_out, campaign_out, mixed_out, clean_out = response.json()["results"]
    assert malformed_out["batch_id"] is None
    assert [problem.split(":")[0] for problem in malformed_out["refused"]] == ["batches[0].batch_id"]
    assert campaign_out["batch_id"] == unknown_campaign["batch_id"]
    assert campaign_out["refused"][0].startswith("campaign_id: campaign 999 does not exist")
    assert (mixed_out["samples_stored"], mixed_out["events_stored"], mixed_out["refused"]) == (1, 0, [])
    assert [(r["index"], r["field"]) for r in mixed_out["rejected"]] == [
        (1, "samples[1].value"),
        (0, "events[0].device"),
    ]
    assert (clean_out["samples_stored"], clean_out["rejected"], clean_out["refused"]) == (2, [], [])
    assert count(engine, Sample) == 3
    assert count(engine, Event) == 0
    # The refused batch's id stays free: sent again for a campaign that exists, it is stored.
    again = client.post(BATCHES, json={"batches": [{**unknown_campaign, "campaign_id": None}]}, headers=auth)
    assert [stored(r) for r in again.json()["results"]] == [(False, 2)]


def test_a_request_for_an_unregistered_node_stores_nothing(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    response = client.post(BATCHES, json={"batches": [batch(0), batch(1, node="n9")]}, headers=auth)

    assert response.status_code == 409 and "'n9' is not registered" in response.text
    assert count(engine, Sample) == 0


def test_a_request_without_batches_is_a_422_naming_the_field(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(BATCHES, json={"batches": []}, headers=auth)

    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("batches:")

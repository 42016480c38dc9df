"""Every input limit: body size (chunked too), batch size, per-item refusals in a mixed batch, strings, numbers,
metric names per node, plan size and duration, CORS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from soak.api import create_app
from soak.config import Settings
from soak.embedded import EmbeddedController, free_port
from tests.security.conftest import bearer

MakeClient = Callable[..., TestClient]
DEVICE = {"name": "sim0", "backend": "sim", "vendor": "simulated", "model": "Simulated H200"}


@pytest.fixture
def make_client(store_url: str, tokens: dict[str, str]) -> Iterator[MakeClient]:
    """A production controller with some settings changed."""
    with ExitStack() as stack:

        def make(**changes: Any) -> TestClient:
            settings = Settings(database_url=store_url, environment="production", **changes)
            return stack.enter_context(TestClient(create_app(settings, run_scheduler=False)))

        yield make


@pytest.fixture
def agent_a(tokens: dict[str, str]) -> dict[str, str]:
    return bearer(tokens["agent-a"])


def register(client: TestClient, headers: dict[str, str], payload: Callable[..., dict[str, Any]]) -> None:
    response = client.put("/api/v1/nodes/node-a", json=payload("node-a", ["sim0"]), headers=headers)
    assert response.status_code == 200, response.text


def sample(**changes: Any) -> dict[str, Any]:
    return {"time_s": time.time(), "device": "sim0", "metric": "device.power_w", "value": 300.0, **changes}


def test_a_body_over_the_limit_is_answered_413(make_client: MakeClient, tokens: dict[str, str]) -> None:
    client = make_client(max_body_bytes=1024)

    response = client.post("/api/v1/campaigns", content=b"{" + b" " * 2048 + b"}", headers=bearer(tokens["operator"]))

    assert response.status_code == 413
    assert "SOAK_MAX_BODY_BYTES" in response.json()["detail"]


def test_a_chunked_body_over_the_limit_is_cut_off_and_one_under_it_goes_through(
    store_url: str, tokens: dict[str, str], plan_data: dict[str, Any]
) -> None:
    settings = Settings(database_url=store_url, environment="production", max_body_bytes=4096, port=free_port())
    controller = EmbeddedController(settings, run_scheduler=False)
    controller.start()
    try:
        headers = {**bearer(tokens["operator"]), "Content-Type": "application/json"}
        plan = httpx.Request("POST", "/", json=plan_data).read()

        def chunks(body: bytes, size: int = 512) -> Iterator[bytes]:
            yield from (body[start : start + size] for start in range(0, len(body), size))

        with httpx.Client(base_url=controller.url, headers=headers) as http:
            # A generator has no length: httpx sends it chunked, without Content-Length.
            huge = http.post("/api/v1/campaigns", content=chunks(b'{"name": "' + b"x" * 8192 + b'"}'))
            fits = http.post("/api/v1/campaigns", content=chunks(plan))
    finally:
        controller.stop()

    assert huge.status_code == 413
    assert fits.status_code == 201, fits.text


def test_a_batch_with_too_many_items_is_refused_whole_and_its_id_stays_free(
    make_client: MakeClient, agent_a: dict[str, str], node_payload: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_batch_samples=2)
    register(client, agent_a, node_payload)
    batch = {"batch_id": uuid.uuid4().hex, "node": "node-a", "samples": [sample(), sample(), sample()]}

    refused = client.post("/api/v1/telemetry", json=batch, headers=agent_a)
    smaller = client.post("/api/v1/telemetry", json={**batch, "samples": batch["samples"][:2]}, headers=agent_a)

    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("samples: 3 items") and "SOAK_MAX_BATCH_SAMPLES" in refused.text
    assert smaller.json()["samples_stored"] == 2


def test_a_request_of_too_many_batches_or_items_is_refused_whole(
    make_client: MakeClient, agent_a: dict[str, str], node_payload: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_request_batches=2, max_batch_samples=3)
    register(client, agent_a, node_payload)

    def request(*sizes: int) -> httpx.Response:
        batches = [{"batch_id": uuid.uuid4().hex, "node": "node-a", "samples": [sample()] * size} for size in sizes]
        return client.post("/api/v1/telemetry/batches", json={"batches": batches}, headers=agent_a)

    too_many_batches, too_many_samples, fits = request(1, 1, 1), request(2, 2), request(1, 2)

    assert too_many_batches.status_code == 422 and "SOAK_MAX_REQUEST_BATCHES" in too_many_batches.text
    assert too_many_batches.json()["detail"].startswith("batches: 3 batches")
    assert too_many_samples.status_code == 422
    assert too_many_samples.json()["detail"].startswith("samples: 4 items; a request holds at most 3")
    assert [result["samples_stored"] for result in fits.json()["results"]] == [1, 2]


def test_a_mixed_batch_stores_every_valid_item_and_names_each_refused_one(
    make_client: MakeClient, agent_a: dict[str, str], node_payload: Callable[..., dict[str, Any]]
) -> None:
    client = make_client()
    register(client, agent_a, node_payload)
    now_s = time.time()
    samples = [
        sample(),
        sample(value=float("nan")),
        sample(time_s=now_s + 86_400),
        sample(time_s=1000.0),
        sample(metric="device.ecc_corrected_volatile_errors", value=-1),
        sample(device="sim9"),
        "not a sample",
        sample(metric="device." + "x" * 90),
        {"time_s": now_s, "metric": "host.cpu_ratio", "value": 0.5},
    ]
    event = {"time_s": now_s, "device": "sim0", "kind": "driver_error", "message": "Xid 79"}
    events = [event, {**event, "message": "x" * 4001}, {**event, "time_s": now_s + 86_400}]
    batch = {"batch_id": uuid.uuid4().hex, "node": "node-a", "samples": samples, "events": events}

    # NaN as Python's json writes it (JSON has no NaN, but agents built on such encoders send it).
    body = json.dumps(batch)
    response = client.post("/api/v1/telemetry", content=body, headers={**agent_a, "Content-Type": "application/json"})
    retry = client.post("/api/v1/telemetry", content=body, headers={**agent_a, "Content-Type": "application/json"})

    result = response.json()
    assert (result["samples_stored"], result["events_stored"]) == (2, 1)
    assert [(r["index"], r["field"]) for r in result["rejected"]] == [
        (1, "samples[1].value"),
        (6, "samples[6]"),
        (7, "samples[7].metric"),
        (1, "events[1].message"),
        (2, "samples[2].time_s"),
        (3, "samples[3].time_s"),
        (4, "samples[4].value"),
        (5, "samples[5].device"),
        (2, "events[2].time_s"),
    ]
    problems = {r["field"]: r["problem"] for r in result["rejected"]}
    assert "ahead of the controller's clock" in problems["samples[2].time_s"]
    assert "is negative" in problems["samples[4].value"]
    assert retry.json()["duplicate"] and retry.json()["samples_stored"] == 0


def test_a_node_sends_at_most_its_share_of_metric_names(
    make_client: MakeClient, agent_a: dict[str, str], node_payload: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_metrics_per_node=2)
    register(client, agent_a, node_payload)

    def send(*metrics: str) -> dict[str, Any]:
        batch = {"batch_id": uuid.uuid4().hex, "node": "node-a", "samples": [sample(metric=m) for m in metrics]}
        result: dict[str, Any] = client.post("/api/v1/telemetry", json=batch, headers=agent_a).json()
        return result

    first = send("device.power_w", "device.temperature_c", "device.x1")
    second = send("device.power_w", "device.x2")

    assert first["samples_stored"] == 2 and [r["field"] for r in first["rejected"]] == ["samples[2].metric"]
    assert "SOAK_MAX_METRICS_PER_NODE" in first["rejected"][0]["problem"]
    assert second["samples_stored"] == 1 and [r["field"] for r in second["rejected"]] == ["samples[1].metric"]


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("POST", "/api/v1/telemetry", {"batch_id": "b" * 8, "node": "n" * 129}, "node"),
        ("POST", "/api/v1/telemetry", {"batch_id": "b" * 8, "node": "a", "campaign_id": 2**40}, "campaign_id"),
        ("GET", f"/api/v1/campaigns/{2**40}", None, "path.campaign_id"),
        ("GET", "/api/v1/campaigns/1/events?limit=0", None, "query.limit"),
        ("DELETE", "/api/v1/tokens/0", None, "path.token_id"),
        ("POST", "/api/v1/tokens", {"name": "x" * 65, "role": "viewer"}, "name"),
        ("POST", "/api/v1/tokens", {"name": "a", "role": "agent"}, "node"),
        ("PUT", "/api/v1/nodes/node-a", {"hostname": "h" * 256, "inbox_dir": "", "sim_state_dir": ""}, "hostname"),
        ("PUT", "/api/v1/nodes/node-a", {"hostname": "h\u0000", "inbox_dir": "", "sim_state_dir": ""}, "hostname"),
        (
            "PUT",
            "/api/v1/nodes/node-a",
            {"hostname": "h", "inbox_dir": "", "sim_state_dir": "", "devices": [{"name": "d0", "backend": "b" * 33}]},
            "devices[0].backend",
        ),
        (
            "PUT",
            "/api/v1/nodes/node-a",
            {"hostname": "h", "inbox_dir": "", "sim_state_dir": "", "devices": [DEVICE, DEVICE]},
            "devices: device names must differ",
        ),
    ],
)
def test_strings_and_numbers_out_of_bounds_are_a_422_naming_the_field(
    secured: TestClient, tokens: dict[str, str], method: str, url: str, body: Any, field: str
) -> None:
    response = secured.request(method, url, json=body, headers=bearer(tokens["operator"]))

    assert response.status_code == 422, response.text
    assert any(problem.startswith(field) for problem in response.json()["problems"]), response.json()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"duration": "400d"}, "duration: 400d is longer than 366d"),
        ({"duration": 1e308}, "duration: 1e+308 is not a duration soak can hold"),
        ({"rotation": "1e400s"}, "rotation: '1e400s' is not a duration"),
        ({"workloads": [{"name": "idle"}] * 65}, "workloads: List should have at most 64 items"),
        ({"faults": [{"kind": "hang", "device": "sim0"}] * 1025}, "faults: List should have at most 1024 items"),
        ({"seed": 2**64}, "seed: Input should be less than or equal to"),
    ],
)
def test_a_plan_too_large_or_too_long_is_a_422_naming_the_field(
    secured: TestClient, tokens: dict[str, str], plan_data: dict[str, Any], changes: dict[str, Any], problem: str
) -> None:
    response = secured.post("/api/v1/campaigns", json={**plan_data, **changes}, headers=bearer(tokens["operator"]))

    assert response.status_code == 422, response.text
    assert any(line.startswith(problem) for line in response.json()["problems"]), response.json()


def test_cors_is_closed_unless_origins_are_configured(make_client: MakeClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}

    closed = make_client().options("/api/v1/campaigns", headers=preflight)
    opened = make_client(cors_origins=["https://grafana.example"])

    assert "access-control-allow-origin" not in closed.headers
    assert "access-control-allow-origin" not in opened.options("/api/v1/campaigns", headers=preflight).headers
    allowed = opened.options("/api/v1/campaigns", headers={**preflight, "Origin": "https://grafana.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://grafana.example"


def test_the_controller_listens_on_loopback_unless_told_otherwise() -> None:
    assert Settings().host == "127.0.0.1"

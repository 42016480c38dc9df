"""Telemetry ingest: stored once per batch id, item by item, attributed to the right campaign; /metrics."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from soak.analysis.series import Detection
from soak.campaigns.models import CampaignState
from soak.campaigns.service import get_campaign, set_state, start_run
from soak.findings.service import upsert_finding
from soak.nodes.models import Device
from soak.nodes.service import reserve
from soak.telemetry.models import Event, Sample

TELEMETRY = "/api/v1/telemetry"
NOW_S = 1_795_000_000.0


@pytest.fixture
def node(register: Callable[..., httpx.Response]) -> str:
    """A registered node `n1` with two simulated devices and a GPU."""
    assert register("n1", ["sim0", "sim1", "n1/cuda0"]).status_code == 200
    return "n1"


def batch(**fields: Any) -> dict[str, Any]:
    return {"batch_id": str(uuid.uuid4()), "node": "n1", "samples": [], "events": [], **fields}


def sample(metric: str, value: Any, device: str | None = None, time_s: float = NOW_S) -> dict[str, Any]:
    return {"time_s": time_s, "device": device, "metric": metric, "value": value}


def rows(engine: Engine, table: type[Sample] | type[Event]) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def metric_values(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_batch_stores_its_samples_and_events(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    xid = "NVRM: Xid (PCI:0000:18:00): 79, pid=1234, GPU has fallen off the bus."
    body = batch(
        samples=[sample("device.temperature_c", 71.5, "sim0"), sample("host.cpu_ratio", 0.25)],
        events=[
            {
                "time_s": NOW_S,
                "device": "n1/cuda0",
                "kind": "driver_error",
                "severity": "critical",
                "code": 79,
                "message": "XID 79",
                "raw": xid,
            }
        ],
    )

    response = client.post(TELEMETRY, json=body, headers=auth)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "batch_id": body["batch_id"],
        "duplicate": False,
        "samples_stored": 2,
        "events_stored": 1,
        "rejected": [],
    }
    with Session(engine) as session:
        devices = {d.id: d.name for d in session.scalars(select(Device))}
        stored = {(devices.get(s.device_id), s.metric): s.value for s in session.scalars(select(Sample))}
        event = session.scalars(select(Event)).one()
    assert stored == {("sim0", "device.temperature_c"): 71.5, (None, "host.cpu_ratio"): 0.25}
    assert (devices[event.device_id], event.kind, event.severity, event.code, event.raw) == (
        "n1/cuda0",
        "driver_error",
        "critical",
        79,
        xid,
    )


def test_a_retried_batch_is_stored_once(client: TestClient, auth: dict[str, str], node: str, engine: Engine) -> None:
    body = batch(
        samples=[sample("device.power_w", 690.0 + i, "sim1", NOW_S + i) for i in range(5)],
        events=[{"time_s": NOW_S, "kind": "worker_restart", "message": "worker for sim1 restarted"}],
    )

    first = client.post(TELEMETRY, json=body, headers=auth).json()
    second = client.post(TELEMETRY, json=body, headers=auth).json()

    assert (first["duplicate"], first["samples_stored"], first["events_stored"]) == (False, 5, 1)
    assert (second["duplicate"], second["samples_stored"], second["events_stored"]) == (True, 0, 0)
    assert rows(engine, Sample) == 5
    assert rows(engine, Event) == 1


def test_bad_items_are_rejected_by_position_and_the_rest_stored(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    body = batch(
        samples=[
            sample("device.temperature_c", 70.0, "sim0"),
            sample("device.temperature_c", "NaN", "sim0"),
            sample("device.temperature_c", 70.0, "sim9"),
            sample("Device Temp", 70.0, "sim0"),
            sample("device.temperature_c", 69.0, "sim1"),
        ],
        events=[
            {"time_s": NOW_S, "device": "gpu-99/cuda0", "kind": "driver_error", "message": "XID 79"},
            {"time_s": NOW_S, "kind": "driver_error", "severity": "fatal", "message": "XID 79"},
            {"time_s": NOW_S, "kind": "hang", "severity": "warning", "message": "no progress for 30 s"},
        ],
    )

    result = client.post(TELEMETRY, json=body, headers=auth).json()

    assert (result["samples_stored"], result["events_stored"]) == (2, 1)
    assert {r["field"]: r["problem"] for r in result["rejected"]} == {
        "samples[1].value": "must be a finite number; drop the sample instead of sending NaN or infinity",
        "samples[2].device": "'sim9' is not a device of node 'n1'",
        "samples[3].metric": "String should match pattern '^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$'",
        "events[0].device": "'gpu-99/cuda0' is not a device of node 'n1'",
        "events[1].severity": "Input should be 'info', 'warning' or 'critical'",
    }
    assert rows(engine, Sample) == 2
    assert rows(engine, Event) == 1


def test_a_batch_from_an_unregistered_node_is_a_conflict(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    response = client.post(TELEMETRY, json=batch(node="n2", samples=[sample("host.cpu_ratio", 0.5)]), headers=auth)

    assert response.status_code == 409
    assert "'n2' is not registered" in response.json()["detail"]
    assert rows(engine, Sample) == 0


def test_a_batch_for_an_unknown_campaign_is_refused_not_taken_for_a_duplicate(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    body = batch(campaign_id=4242, samples=[sample("throughput.gemm", 812.0, "sim0")])

    response = client.post(TELEMETRY, json=body, headers=auth)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("campaign_id: campaign 4242 does not exist")
    assert rows(engine, Sample) == 0
    # Nothing was recorded as ingested, so the same batch is stored once the campaign question is settled.
    fixed = client.post(TELEMETRY, json={**body, "campaign_id": None}, headers=auth).json()
    assert (fixed["duplicate"], fixed["samples_stored"]) == (False, 1)


def test_a_malformed_batch_is_answered_422(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine, subtests: pytest.Subtests
) -> None:
    for change, problem in [
        ({"batch_id": "short"}, "batch_id: String should match pattern"),
        ({"node": "bad node"}, "node: String should match pattern"),
        ({"samples": "lots"}, "samples: Input should be a valid list"),
        ({"payload": []}, "payload: Extra inputs are not permitted"),
    ]:
        with subtests.test(msg=problem):
            body = {**batch(samples=[sample("host.cpu_ratio", 0.5)]), **change}

            response = client.post(TELEMETRY, json=body, headers=auth)

            assert response.status_code == 422
            assert response.json()["problems"][0].startswith(problem), response.json()
    assert rows(engine, Sample) == 0


def test_ingest_needs_the_token(client: TestClient, node: str, engine: Engine) -> None:
    body = batch(samples=[sample("host.cpu_ratio", 0.5)])

    assert client.post(TELEMETRY, json=body).status_code == 401
    assert client.post(TELEMETRY, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert rows(engine, Sample) == 0


def test_samples_go_to_the_campaign_that_holds_the_device(
    client: TestClient,
    auth: dict[str, str],
    node: str,
    engine: Engine,
    session: Session,
    plan_data: dict[str, Any],
) -> None:
    campaign_id = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    sim0 = session.scalars(select(Device).where(Device.name == "sim0")).one()
    reserve(session=session, devices=[sim0], campaign_id=campaign_id)

    client.post(
        TELEMETRY,
        json=batch(
            samples=[
                sample("device.memory_used_bytes", 8.2e9, "sim0"),
                sample("device.memory_used_bytes", 1.1e9, "sim1"),
                sample("host.memory_used_bytes", 3.0e10),
            ]
        ),
        headers=auth,
    )

    with Session(engine) as check:
        devices = {d.id: d.name for d in check.scalars(select(Device))}
        owners = {(devices.get(s.device_id), s.campaign_id) for s in check.scalars(select(Sample))}
    # The node's own samples belong to the campaign running on it; a free device's to none.
    assert owners == {("sim0", campaign_id), ("sim1", None), (None, campaign_id)}
    assert client.get(f"/api/v1/campaigns/{campaign_id}").json()["samples_stored"] == 2


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_metrics_count_campaigns_by_state_and_ingested_samples(
    client: TestClient, auth: dict[str, str], node: str, plan_data: dict[str, Any]
) -> None:
    first = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    client.post("/api/v1/campaigns", json=plan_data, headers=auth)
    client.post(f"/api/v1/campaigns/{first}/stop", headers=auth)
    body = batch(samples=[sample("device.power_w", 700.0, "sim0"), sample("host.cpu_ratio", 0.4)])
    client.post(TELEMETRY, json=body, headers=auth)
    client.post(TELEMETRY, json=body, headers=auth)

    values = metric_values(client)

    assert values[("soak_campaigns", (("state", "pending"),))] == 1.0
    assert values[("soak_campaigns", (("state", "stopped"),))] == 1.0
    assert values[("soak_campaigns", (("state", "running"),))] == 0.0
    assert values[("soak_samples_ingested_total", ())] == 2.0
    assert values[("soak_batches_ingested_total", (("outcome", "stored"),))] == 1.0
    assert values[("soak_batches_ingested_total", (("outcome", "duplicate"),))] == 1.0
    assert values[("soak_devices_reserved", ())] == 0.0
    assert values[("soak_devices_running", ())] == 0.0


def test_metrics_show_devices_running_and_each_finding_with_its_device_and_onset(
    client: TestClient, auth: dict[str, str], node: str, plan_data: dict[str, Any], engine: Engine
) -> None:
    campaign_id = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    with Session(engine) as session:
        campaign = get_campaign(session=session, campaign_id=campaign_id)
        set_state(session=session, campaign=campaign, state=CampaignState.RUNNING)
        sim0 = session.scalars(select(Device.id).where(Device.name == "sim0")).one()
        leak = Detection(
            device="sim0",
            kind="memory_leak",
            subject="process.rss_bytes",
            severity="warning",
            onset_s=NOW_S - 600,
            detected_s=NOW_S - 300,
            last_seen_s=NOW_S,
            explanation="Worker resident memory grows 80 MiB/h.",
            evidence={},
        )
        upsert_finding(session=session, campaign_id=campaign_id, device_id=sim0, detection=leak)
        start_run(session=session, campaign_id=campaign_id, device_id=sim0, workload="gemm", started_s=NOW_S - 900)

    values = metric_values(client)

    assert values[("soak_devices_running", ())] == 1.0

    labels = {
        "campaign": str(campaign_id),
        "node": "n1",
        "device": "sim0",
        "kind": "memory_leak",
        "subject": "process.rss_bytes",
        "severity": "warning",
    }
    assert values[("soak_finding_onset_timestamp_seconds", tuple(sorted(labels.items())))] == NOW_S - 600

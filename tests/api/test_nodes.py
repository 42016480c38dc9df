"""Node registration over the API, and how a plan's device selectors pick from the fleet."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from soak.api import create_app
from soak.config import Settings
from soak.nodes.schemas import NodeIn
from soak.nodes.service import (
    PlacementError,
    list_devices,
    register_node,
    release,
    reserve,
    select_devices,
)
from soak.plan import DeviceSelector

Register = Callable[..., httpx.Response]


def devices_by_name(client: TestClient) -> dict[str, dict[str, Any]]:
    return {device["name"]: device for device in client.get("/api/v1/devices").json()}


def test_registration_creates_the_node_and_its_devices(client: TestClient, register: Register) -> None:
    response = register("gpu-07", ["gpu-07/cuda0", "gpu-07/cuda1", "sim0"])

    assert response.status_code == 200, response.text
    node = response.json()
    assert (node["name"], node["hostname"]) == ("gpu-07", "gpu-07.example.internal")
    assert [n["name"] for n in client.get("/api/v1/nodes").json()] == ["gpu-07"]
    devices = devices_by_name(client)
    assert sorted(devices) == ["gpu-07/cuda0", "gpu-07/cuda1", "sim0"]
    assert devices["gpu-07/cuda1"]["vendor"] == "nvidia"
    assert devices["gpu-07/cuda1"]["index"] == 1
    assert devices["sim0"]["simulated"] is True
    assert {d["node"] for d in devices.values()} == {"gpu-07"}
    assert {d["campaign_id"] for d in devices.values()} == {None}


def test_registering_again_updates_in_place(
    client: TestClient, auth: dict[str, str], node_payload: Callable[..., dict[str, Any]]
) -> None:
    payload = node_payload("gpu-07", ["gpu-07/cuda0", "gpu-07/cuda1"])
    first = client.put("/api/v1/nodes/gpu-07", json=payload, headers=auth).json()
    before = devices_by_name(client)

    payload["hostname"] = "gpu-07.renamed.internal"
    payload["devices"][1]["driver_version"] = "575.51.03"
    again = client.put("/api/v1/nodes/gpu-07", json=payload, headers=auth)

    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["hostname"] == "gpu-07.renamed.internal"
    seen = [datetime.fromisoformat(body["last_seen_at"]) for body in (first, again.json())]
    assert seen[1] >= seen[0]
    assert len(client.get("/api/v1/nodes").json()) == 1
    after = devices_by_name(client)
    assert {name: d["id"] for name, d in after.items()} == {name: d["id"] for name, d in before.items()}
    assert after["gpu-07/cuda1"]["driver_version"] == "575.51.03"
    assert after["gpu-07/cuda0"]["driver_version"] == "570.86.15"


def test_a_device_that_is_no_longer_reported_is_kept_for_history(client: TestClient, register: Register) -> None:
    register("gpu-07", ["gpu-07/cuda0", "gpu-07/cuda1"])

    register("gpu-07", ["gpu-07/cuda0"])

    assert sorted(devices_by_name(client)) == ["gpu-07/cuda0", "gpu-07/cuda1"]


def test_a_device_name_claimed_by_another_node_is_a_conflict(client: TestClient, register: Register) -> None:
    register("node-a", ["sim0", "sim1"])

    response = register("node-b", ["sim2", "sim1"])

    assert response.status_code == 409
    assert "'sim1' is registered by another node" in response.json()["detail"]
    assert [n["name"] for n in client.get("/api/v1/nodes").json()] == ["node-a"]
    assert {name: d["node"] for name, d in devices_by_name(client).items()} == {
        "sim0": "node-a",
        "sim1": "node-a",
    }


def test_registration_needs_the_token(client: TestClient, node_payload: Callable[..., dict[str, Any]]) -> None:
    response = client.put("/api/v1/nodes/n1", json=node_payload("n1", ["sim0"]))

    assert response.status_code == 401
    assert client.get("/api/v1/nodes").json() == []


BAD_REGISTRATIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("device-name", lambda p: p["devices"][0].update(name="gpu 0"), "devices[0].name: String should match pattern"),
    ("backend", lambda p: p["devices"][0].update(backend="CUDA!"), "devices[0].backend: String should match pattern"),
    ("no-inbox", lambda p: p.pop("inbox_dir"), "inbox_dir: Field required"),
    ("unknown-field", lambda p: p.update(gpus=8), "gpus: Extra inputs are not permitted"),
]


def test_a_bad_registration_is_answered_422_naming_the_field(
    client: TestClient,
    auth: dict[str, str],
    node_payload: Callable[..., dict[str, Any]],
    subtests: pytest.Subtests,
) -> None:
    for case, change, problem in BAD_REGISTRATIONS:
        with subtests.test(msg=case):
            payload = node_payload("n1", ["sim0"])
            change(payload)

            response = client.put("/api/v1/nodes/n1", json=payload, headers=auth)

            assert response.status_code == 422
            problems = response.json()["problems"]
            assert len(problems) == 1 and problems[0].startswith(problem), problems
    assert client.get("/api/v1/nodes").json() == []


def test_a_bad_node_name_is_answered_422(client: TestClient, register: Register) -> None:
    response = register("-n1", ["sim0"])

    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("path.name: String should match pattern")


@pytest.fixture
def fleet(session: Session) -> dict[str, int]:
    """Two nodes: `a` with two simulated devices and two H200s, `b` with two H100s and a CPU; ids by name."""

    def node(name: str, devices: list[dict[str, Any]]) -> None:
        register_node(
            session=session,
            name=name,
            node_in=NodeIn.model_validate(
                {"hostname": name, "inbox_dir": "/tmp/inbox", "sim_state_dir": "/tmp/sim", "devices": devices}
            ),
        )

    sim = {"backend": "sim", "vendor": "simulated", "model": "Simulated H200", "simulated": True}
    node(
        "a",
        [
            {"name": "sim0", **sim},
            {"name": "sim1", "index": 1, **sim},
            {"name": "a/cuda0", "backend": "cuda", "vendor": "nvidia", "model": "NVIDIA H200"},
            {"name": "a/cuda1", "backend": "cuda", "index": 1, "vendor": "NVIDIA", "model": "NVIDIA H200"},
        ],
    )
    node(
        "b",
        [
            {"name": "b/cuda0", "backend": "cuda", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3"},
            {
                "name": "b/cuda1",
                "backend": "cuda",
                "index": 1,
                "vendor": "nvidia",
                "model": "NVIDIA H100 80GB HBM3",
            },
            {"name": "b/cpu0", "backend": "cpu", "vendor": "cpu", "model": "AMD EPYC 9654 96-Core Processor"},
        ],
    )
    return {device.name: device.id for device, _ in list_devices(session=session)}


def chosen(session: Session, *selectors: dict[str, Any]) -> list[str]:
    devices = select_devices(session=session, selectors=[DeviceSelector.model_validate(s) for s in selectors])
    return [device.name for device in devices]


def test_simulated_selectors_take_only_simulated_devices(session: Session, fleet: dict[str, int]) -> None:
    assert chosen(session, {"simulated": 2}) == ["sim0", "sim1"]


def test_vendor_and_model_selectors_take_only_real_matching_devices(session: Session, fleet: dict[str, int]) -> None:
    # "Simulated H200" must not count as an H200; vendor and model match without regard to case.
    assert chosen(session, {"vendor": "nvidia", "model": "h200"}) == ["a/cuda0", "a/cuda1"]
    assert chosen(session, {"model": "H100", "count": 1}) == ["b/cuda0"]
    assert chosen(session, {"vendor": "cpu"}) == ["b/cpu0"]
    assert chosen(session, {"vendor": "nvidia"}) == ["a/cuda0", "a/cuda1", "b/cuda0", "b/cuda1"]


def test_node_filters_narrow_the_choice(session: Session, fleet: dict[str, int]) -> None:
    assert chosen(session, {"vendor": "nvidia", "nodes": ["b"]}) == ["b/cuda0", "b/cuda1"]
    assert chosen(session, {"nodes": ["a"]}) == ["a/cuda0", "a/cuda1"]
    assert chosen(session, {"simulated": 1, "nodes": ["a"]}) == ["sim0"]


def test_several_selectors_never_take_a_device_twice(session: Session, fleet: dict[str, int]) -> None:
    assert chosen(session, {"model": "H200", "count": 1}, {"vendor": "nvidia", "count": 3}) == [
        "a/cuda0",
        "a/cuda1",
        "b/cuda0",
        "b/cuda1",
    ]


def test_placement_errors_name_the_selector_and_the_numbers(session: Session, fleet: dict[str, int]) -> None:
    with pytest.raises(PlacementError) as simulated:
        chosen(session, {"simulated": 3})
    with pytest.raises(PlacementError) as second:
        chosen(session, {"vendor": "nvidia", "count": 2}, {"model": "H200", "count": 1})
    with pytest.raises(PlacementError) as nothing:
        chosen(session, {"vendor": "huawei", "model": "910B"})

    assert str(simulated.value).startswith(
        "devices[0]: the plan asks for 3 simulated devices, the fleet has 2 free (simulated=3)"
    )
    assert str(second.value).startswith(
        "devices[1]: the plan asks for 1 matching devices, the fleet has 0 free (model=H200, count=1)"
    )
    assert str(nothing.value).startswith("devices[0]: the plan asks for 1 matching devices, the fleet has 0 free")
    assert str(nothing.value).endswith("register more nodes or lower the count")


def test_reserved_devices_are_not_free_until_released(
    session: Session,
    fleet: dict[str, int],
    client: TestClient,
    auth: dict[str, str],
    plan_data: dict[str, Any],
) -> None:
    campaign_id = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    reserve(
        session=session,
        devices=select_devices(session=session, selectors=[DeviceSelector(simulated=1)]),
        campaign_id=campaign_id,
    )

    assert chosen(session, {"simulated": 1}) == ["sim1"]
    with pytest.raises(PlacementError, match="asks for 2 simulated devices, the fleet has 1 free"):
        chosen(session, {"simulated": 2})
    assert devices_by_name(client)["sim0"]["campaign_id"] == campaign_id
    assert client.get(f"/api/v1/campaigns/{campaign_id}").json()["devices_reserved"] == 1

    release(session=session, campaign_id=campaign_id)
    assert chosen(session, {"simulated": 2}) == ["sim0", "sim1"]


def test_a_driver_changed_under_a_campaign_is_an_event_naming_both_versions(
    client: TestClient,
    auth: dict[str, str],
    node_payload: Callable[..., dict[str, Any]],
    session: Session,
    plan_data: dict[str, Any],
) -> None:
    payload = node_payload("gpu-07", ["gpu-07/cuda0", "gpu-07/cuda1"])
    payload["devices"][0]["driver_version"] = payload["devices"][1]["driver_version"] = "550.54.15"
    assert client.put("/api/v1/nodes/gpu-07", json=payload, headers=auth).status_code == 200
    campaign_id = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    reserve(
        session=session,
        devices=select_devices(session=session, selectors=[DeviceSelector(vendor="nvidia", count=1)]),
        campaign_id=campaign_id,
    )

    # Both devices get the new driver; only the one in the campaign has a campaign to tell.
    payload["devices"][0]["driver_version"] = payload["devices"][1]["driver_version"] = "560.28.03"
    assert client.put("/api/v1/nodes/gpu-07", json=payload, headers=auth).status_code == 200
    assert client.put("/api/v1/nodes/gpu-07", json=payload, headers=auth).status_code == 200

    events = client.get(f"/api/v1/campaigns/{campaign_id}/events").json()
    in_campaign = devices_by_name(client)["gpu-07/cuda0"]["id"]
    assert [(event["kind"], event["device_id"]) for event in events] == [("stack_change", in_campaign)]
    assert json.loads(events[0]["raw"]) == {"component": "driver", "old": "550.54.15", "new": "560.28.03"}
    assert "550.54.15 → 560.28.03" in events[0]["message"]


def test_registration_keeps_the_prometheus_targets_file_current(
    database_url: str, auth: dict[str, str], node_payload: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    targets_file = tmp_path / "prometheus" / "targets" / "soak.json"
    token = auth["Authorization"].removeprefix("Bearer ")
    settings = Settings(database_url=database_url, api_token=token, port=8123, prometheus_targets_file=targets_file)
    with TestClient(create_app(settings, run_scheduler=False)) as client:
        for name in ("gpu-02", "gpu-01"):
            payload = node_payload(name, [f"{name}/cuda0"])
            payload["agent_url"] = f"http://{name}.example.internal:9464"
            assert client.put(f"/api/v1/nodes/{name}", json=payload, headers=auth).status_code == 200
        # A node whose agent serves no /metrics has nothing to scrape.
        assert client.put("/api/v1/nodes/quiet", json=node_payload("quiet", ["sim0"]), headers=auth).status_code == 200

    assert json.loads(targets_file.read_text()) == [
        {"targets": ["127.0.0.1:8123"], "labels": {"role": "controller"}},
        {"targets": ["gpu-01.example.internal:9464"], "labels": {"role": "agent", "node": "gpu-01"}},
        {"targets": ["gpu-02.example.internal:9464"], "labels": {"role": "agent", "node": "gpu-02"}},
    ]

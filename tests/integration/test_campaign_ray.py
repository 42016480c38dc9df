"""A whole campaign on a real Ray cluster (head + 2 nodes on loopback), real controller, real agents."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from soak.config import Settings
from soak.db import make_engine, session_factory
from soak.embedded import EmbeddedController, free_port, start_agent, stop_agents
from soak.migrations import upgrade
from soak.nodes.models import Device
from soak.scheduler.discovery import node_resource
from soak.telemetry.models import Sample

pytestmark = pytest.mark.ray
TOKEN = "integration-token-0123456789abcdef0123456789"
SIM_NODES = {"sim-node-0": (2, 0), "sim-node-1": (2, 2)}  # name: (devices, first index)
LEAKING_DEVICE = "sim1"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 80 * 1024 * 1024},
    )
    for name, (devices, _) in SIM_NODES.items():
        cluster.add_node(
            num_cpus=1,
            resources={"SOAK_SIM": float(devices), node_resource(name): 1.0},
            object_store_memory=80 * 1024 * 1024,
        )
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


@dataclass(frozen=True)
class Controller:
    url: str
    database_url: str


@pytest.fixture
def controller(tmp_path: Path, ray_cluster: str) -> Iterator[Controller]:
    database_url = f"sqlite:///{tmp_path / 'soak.db'}"
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        api_token=TOKEN,
        port=free_port(),
        executor="ray",
        ray_address=ray_cluster,
        detect_interval_s=5.0,
        placement_wait_s=30.0,
        hang_timeout_s=20.0,
    )
    embedded = EmbeddedController(settings)
    embedded.start()
    yield Controller(url=embedded.url, database_url=database_url)
    embedded.stop()


@pytest.fixture
def agents(controller: Controller, tmp_path: Path) -> Iterator[None]:
    processes = [
        start_agent(
            controller_url=controller.url,
            token=TOKEN,
            node=name,
            data_dir=tmp_path / "nodes" / name,
            simulated=devices,
            sim_first_index=first,
        )
        for name, (devices, first) in SIM_NODES.items()
    ]
    yield
    stop_agents(processes)


def _plan() -> dict[str, Any]:
    return {
        "name": "integration",
        "duration": "90s",
        "warmup": "15s",
        "rotation": "90s",
        "sample_interval": "1s",
        "devices": {"simulated": 4},
        "workloads": [
            {"name": "gemm", "params": {"size": 64}},
            {
                "name": "train",
                "batch_size": 8,
                "params": {"d_model": 64, "layers": 1, "heads": 2, "seq_len": 32, "vocab": 512},
            },
        ],
        "faults": [
            {
                "kind": "memory_leak",
                "device": LEAKING_DEVICE,
                "target": "host",
                "start": "10s",
                "rate_mib_per_hour": 8192,
            }
        ],
        "seed": 3,
        # Four devices doing real work on the CI machine's two cores: each one's throughput moves by a few percent
        # for seconds at a time as its neighbours change work. What matters here is a drop of 10 %, as a plan for
        # devices sharing a host would say.
        "acceptance": {"throughput": {"min_detectable_drop": 0.1}},
    }


def test_a_campaign_runs_to_completion_and_finds_the_injected_leak(controller: Controller, agents: None) -> None:
    client = httpx.Client(base_url=controller.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    created = client.post("/api/v1/campaigns", json=_plan())
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]

    give_up_s = time.time() + 240
    while True:
        progress = client.get(f"/api/v1/campaigns/{campaign_id}").json()
        if progress["campaign"]["state"] in {"completed", "stopped", "failed"} or time.time() > give_up_s:
            break
        time.sleep(1)

    assert progress["campaign"]["state"] == "completed", progress["campaign"]["reason"]
    devices = {device["name"]: device for device in client.get("/api/v1/devices").json()}
    assert {f"sim{i}" for i in range(4)} <= set(devices)
    assert all(devices[f"sim{i}"]["campaign_id"] is None for i in range(4)), "devices are released at the end"

    # Every device reported throughput, device telemetry through its agent, and its worker's RSS.
    with session_factory(make_engine(controller.database_url))() as session:
        rows = session.execute(
            select(Device.name, Sample.metric, func.count())
            .join(Device, Sample.device_id == Device.id)
            .where(Sample.campaign_id == campaign_id)
            .group_by(Device.name, Sample.metric)
        ).all()
    metrics_by_device: dict[str, set[str]] = {}
    for name, metric, count in rows:
        assert count > 0
        metrics_by_device.setdefault(name, set()).add(metric)
    for index in range(4):
        seen = metrics_by_device.get(f"sim{index}", set())
        assert {"device.temperature_c", "device.power_w", "process.rss_bytes"} <= seen, seen
        assert any(metric.startswith("throughput.") for metric in seen), seen

    findings = client.get(f"/api/v1/campaigns/{campaign_id}/findings").json()
    # Info findings (what each device's power cap costs) are notes for the report, not alarms.
    flagged = {(finding["device"], finding["kind"]) for finding in findings if finding["severity"] != "info"}
    assert (LEAKING_DEVICE, "memory_leak") in flagged, findings
    assert {device for device, _ in flagged} == {LEAKING_DEVICE}, findings
    leak = next(f for f in findings if f["device"] == LEAKING_DEVICE and f["kind"] == "memory_leak")
    assert leak["subject"] == "process.rss_bytes"
    # Injected at 8 GiB/h of real, resident host memory; the measured rate must be in that neighbourhood.
    assert 4096 < leak["evidence"]["rate_mib_per_hour"] < 16384, leak["evidence"]


def test_a_plan_larger_than_the_ray_cluster_fails_with_a_clear_reason(controller: Controller, tmp_path: Path) -> None:
    client = httpx.Client(base_url=controller.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    # Six simulated devices registered on a node whose Ray node offers only two SOAK_SIM slots.
    devices = [
        {
            "name": f"sim{i}",
            "backend": "sim",
            "index": i,
            "vendor": "simulated",
            "model": "Simulated H200",
            "simulated": True,
        }
        for i in range(6)
    ]
    node = {
        "hostname": "sim-node-0",
        "inbox_dir": str(tmp_path / "inbox"),
        "sim_state_dir": str(tmp_path / "sim"),
        "devices": devices,
    }
    assert client.put("/api/v1/nodes/sim-node-0", json=node).status_code == 200
    plan = {**_plan(), "devices": {"simulated": 6}, "faults": []}
    campaign_id = client.post("/api/v1/campaigns", json=plan).json()["id"]

    give_up_s = time.time() + 60
    while (campaign := client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"])["state"] == "pending":
        assert time.time() < give_up_s, "placement must fail, not hang"
        time.sleep(0.5)
    assert campaign["state"] == "failed"
    assert "node sim-node-0: SOAK_SIM: needs 6, its Ray node has 2" in campaign["reason"]
    assert all(device["campaign_id"] is None for device in client.get("/api/v1/devices").json())

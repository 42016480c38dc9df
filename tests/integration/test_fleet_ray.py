"""A fleet on a real Ray cluster (head + nodes on loopback): agents the controller starts as Ray actors, the cluster
view before a campaign, and a campaign that waits for a node whose Ray node has not joined yet.

One cluster and one controller serve the module; the tests run in order and each leaves the fleet as the next
expects it (node-a and node-b with agents as actors, then node-c with a daemon agent and, later, its Ray node).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from soak.cli import app
from soak.config import Settings
from soak.db import make_engine, session_factory
from soak.embedded import EmbeddedController, free_port, start_agent, stop_agents
from soak.migrations import upgrade
from soak.nodes.models import Node
from soak.scheduler.agent_actors import agent_actor_name
from soak.scheduler.discovery import node_resource
from soak.scheduler.ray_executor import NAMESPACE
from soak.telemetry.models import Sample

pytestmark = pytest.mark.ray
TOKEN = "fleet-token-0123456789abcdef0123456789abcdef"
ACTOR_NODES = ("node-a", "node-b")  # one simulated device each, their agents started by the controller
LATE_NODE = "node-c"  # its agent runs as a daemon from the start; its Ray node joins during a campaign
LATE_DEVICE = "sim7"
LATE_PLAN = {
    "name": "late-node",
    "duration": "5m",
    "warmup": "5s",
    "rotation": "5m",
    "sample_interval": "1s",
    "devices": {"simulated": 3},
    "workloads": [{"name": "gemm", "params": {"size": 32}}],
}


@dataclass
class Fleet:
    cluster: Any
    ray_nodes: dict[str, Any]
    client: httpx.Client
    database_url: str
    tmp: Path
    daemons: list[Any]


def _add_node(cluster: Any, name: str, sim_slots: int) -> Any:
    return cluster.add_node(
        num_cpus=1,
        resources={"SOAK_SIM": float(sim_slots), node_resource(name): 1.0},
        object_store_memory=80 * 1024 * 1024,
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    tmp = tmp_path_factory.mktemp("fleet")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 * 1024 * 1024},
    )
    ray_nodes = {name: _add_node(cluster, name, 1) for name in ACTOR_NODES}
    cluster.wait_for_nodes()
    database_url = f"sqlite:///{tmp / 'soak.db'}"
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        api_token=TOKEN,
        port=free_port(),
        executor="ray",
        ray_address=cluster.address,
        detect_interval_s=5.0,
        placement_wait_s=3.0,
        agents_as_ray_actors=True,
        agent_actor_data_dir=tmp / "nodes",
        agent_actor_metrics_port=0,
        agent_actor_cpu_device=False,
    )
    controller = EmbeddedController(settings)
    controller.start()
    client = httpx.Client(base_url=controller.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    fleet = Fleet(cluster, ray_nodes, client, database_url, tmp, [])
    yield fleet
    client.close()
    stop_agents(fleet.daemons)
    controller.stop()
    ray.shutdown()
    cluster.shutdown()


def _wait(condition: Callable[[], bool], what: str, *, give_up_s: float = 90.0) -> None:
    deadline_s = time.time() + give_up_s
    while not condition():
        assert time.time() < deadline_s, f"gave up waiting for {what}"
        time.sleep(0.5)


def _actor_node_id(name: str) -> str | None:
    """The Ray node id the named actor lives on; None while there is no such actor."""
    import ray
    from ray._private import state

    try:
        actor = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
    entry = state.actors(actor_id=actor._actor_id.hex())
    node_id = entry.get("Address", {}).get("NodeID") if entry.get("State") == "ALIVE" else None
    return str(node_id) if node_id else None


def _soak_check(fleet: Fleet, plan: dict[str, Any]) -> Any:
    """`soak check PLAN --url CONTROLLER`: the plan, and the fleet it may run on."""
    path = fleet.tmp / f"{plan['name']}.yaml"
    path.write_text(yaml.safe_dump(plan))
    url = str(fleet.client.base_url).rstrip("/")
    return CliRunner().invoke(app, ["check", str(path), "--url", url, "--token", TOKEN])


def _devices_of(client: httpx.Client) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = {}
    for device in client.get("/api/v1/devices").json():
        by_node.setdefault(device["node"], []).append(device["name"])
    return by_node


def test_agents_started_as_ray_actors_register_their_nodes_and_push_telemetry(fleet: Fleet) -> None:
    _wait(lambda: set(ACTOR_NODES) <= _devices_of(fleet.client).keys(), "both nodes registered by their agents")

    devices = _devices_of(fleet.client)
    assert sorted(devices["node-a"] + devices["node-b"]) == ["sim0", "sim1"], devices
    for name in ACTOR_NODES:
        assert _actor_node_id(agent_actor_name(name)) == fleet.ray_nodes[name].node_id, name

    sessions = session_factory(make_engine(fleet.database_url))

    def stored_per_node() -> dict[str, int]:
        with sessions() as session:
            rows = session.execute(
                select(Node.name, func.count())
                .select_from(Sample)
                .join(Node, Sample.node_id == Node.id)
                .group_by(Node.name)
            ).all()
        return {name: count for name, count in rows}

    _wait(lambda: all(stored_per_node().get(name, 0) > 0 for name in ACTOR_NODES), "telemetry of both nodes")

    view = fleet.client.get("/api/v1/cluster").json()
    assert view["ray"] is True and view["places_by_node"] is True
    rows = {row["name"]: row for row in view["nodes"]}
    for name in ACTOR_NODES:
        assert rows[name]["agent_registered"] and rows[name]["pinned"], rows[name]
        assert rows[name]["resources"] == [{"resource": "SOAK_SIM", "ray": 1, "agent": 1}]
        assert rows[name]["ray_node_id"] == fleet.ray_nodes[name].node_id
    assert view["problems"] == []
    checked = _soak_check(fleet, LATE_PLAN)
    assert checked.exit_code == 0, checked.output
    assert "the fleet is ready" in checked.output


def test_a_campaign_waits_for_a_node_whose_ray_node_has_not_joined_and_places_it_there_once_it_has(
    fleet: Fleet,
) -> None:
    client = fleet.client
    fleet.daemons.append(
        start_agent(
            controller_url=str(client.base_url).rstrip("/"),
            token=TOKEN,
            node=LATE_NODE,
            data_dir=fleet.tmp / "daemon" / LATE_NODE,
            simulated=1,
            sim_first_index=int(LATE_DEVICE.removeprefix("sim")),
        )
    )
    _wait(lambda: LATE_NODE in _devices_of(client), "the daemon agent's registration")
    problems = client.get("/api/v1/cluster").json()["problems"]
    assert len(problems) == 1 and problems[0].startswith(f"node {LATE_NODE}: registered by its agent, but no live")

    checked = _soak_check(fleet, LATE_PLAN)
    assert checked.exit_code == 1, checked.output
    assert f"node {LATE_NODE}: registered by its agent, but no live Ray node carries soak_node_{LATE_NODE}" in (
        " ".join(checked.output.split())
    )

    created = client.post("/api/v1/campaigns", json=LATE_PLAN)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]

    def worker(device: str) -> str:
        return f"soak-campaign-{campaign_id}-{device}"

    def events(kind: str) -> list[dict[str, Any]]:
        return [e for e in client.get(f"/api/v1/campaigns/{campaign_id}/events").json() if e["kind"] == kind]

    try:
        _wait(lambda: bool(events("node_waiting")), "the node_waiting event")
        for device, node in (("sim0", "node-a"), ("sim1", "node-b")):
            _wait(lambda d=device: _actor_node_id(worker(d)) is not None, f"the worker of {device}")
            assert _actor_node_id(worker(device)) == fleet.ray_nodes[node].node_id
        assert client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]["state"] == "running"
        time.sleep(2.0)  # a few of the runner's ticks: still no worker for the absent node, anywhere
        assert _actor_node_id(worker(LATE_DEVICE)) is None
        [waiting] = events("node_waiting")
        assert f"soak_node_{LATE_NODE}" in waiting["message"] and "ray start" in waiting["message"]

        late = _add_node(fleet.cluster, LATE_NODE, 2)  # one SOAK_SIM more than its agent registered
        _wait(lambda: _actor_node_id(worker(LATE_DEVICE)) is not None, "the late node's worker")
        assert _actor_node_id(worker(LATE_DEVICE)) == late.node_id
        assert len(events("node_joined")) == 1 and len(events("node_waiting")) == 1
        fleet.ray_nodes[LATE_NODE] = late

        view = client.get("/api/v1/cluster").json()
        assert view["problems"] == [
            f"node {LATE_NODE}: its Ray node offers 2 SOAK_SIM, its agent registered 1 device(s) that use SOAK_SIM; "
            "find the device one side does not see (the agent's log and the vendor's tool, e.g. nvidia-smi) or "
            "correct the Ray node's --resources"
        ]
        # Its agent is the daemon: the controller started no second one as an actor.
        assert _actor_node_id(agent_actor_name(LATE_NODE)) is None
    finally:
        client.post(f"/api/v1/campaigns/{campaign_id}/stop")
        _wait(
            lambda: client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]["state"] == "stopped",
            "the campaign to stop",
        )
    # Its device was out of the campaign until its node joined: that is on its record.
    findings = client.get(f"/api/v1/campaigns/{campaign_id}/findings").json()
    [late] = [f for f in findings if f["device"] == LATE_DEVICE and f["kind"] == "node_lost"]
    assert late["evidence"]["node_waiting_events"] == 1 and late["evidence"]["came_back"] == "yes", late


def test_a_campaign_none_of_whose_nodes_has_joined_fails_naming_them_and_the_fix(fleet: Fleet) -> None:
    client = fleet.client
    node = {
        "hostname": "ghost",
        "inbox_dir": str(fleet.tmp / "ghost" / "inbox"),
        "sim_state_dir": str(fleet.tmp / "ghost" / "sim"),
        "devices": [
            {"name": "sim99", "backend": "sim", "vendor": "simulated", "model": "Simulated H200", "simulated": True}
        ],
    }
    assert client.put("/api/v1/nodes/ghost", json=node).status_code == 200
    plan = {
        "name": "ghost",
        "duration": "5m",
        "devices": [{"simulated": 1, "nodes": ["ghost"]}],
        "workloads": [{"name": "gemm"}],
    }
    created = client.post("/api/v1/campaigns", json=plan)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]

    _wait(
        lambda: client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]["state"] != "pending",
        "placement to give up",
        give_up_s=60,
    )
    campaign = client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]
    assert campaign["state"] == "failed"
    assert campaign["reason"].startswith("no Ray node carries soak_node_ghost: none of the campaign's nodes (ghost)")
    assert "ray start --address=HEAD:6379" in campaign["reason"]
    assert _actor_node_id(f"soak-campaign-{campaign_id}-sim99") is None
    assert next(d for d in client.get("/api/v1/devices").json() if d["name"] == "sim99")["campaign_id"] is None

"""The cluster view: Ray nodes against registered agents, and what an infra team must fix before a campaign."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from soak.console import fleet_problems
from soak.nodes.cluster import cluster_view
from soak.nodes.schemas import NodeIn
from soak.nodes.service import register_node
from soak.plan import Plan, parse_plan
from soak.scheduler.discovery import RayNode, node_resource


def _ray_node(name: str, devices: dict[str, int], *, pinned: bool = True) -> RayNode:
    resources: dict[str, float] = {"CPU": 8.0, **{key: float(value) for key, value in devices.items()}}
    if pinned:
        resources[node_resource(name)] = 1.0
    return RayNode(
        node_id=f"id-{name}",
        name=name,
        pinned=pinned,
        address="10.0.0.7",
        hostname=f"{name}.example.internal",
        devices=devices,
        resources=resources,
    )


def _register(session: Session, payload: Callable[..., dict[str, Any]], node: str, count: int) -> None:
    devices = [f"{node}/cuda{index}" for index in range(count)]
    register_node(session=session, name=node, node_in=NodeIn.model_validate(payload(node, devices)))


def test_the_view_names_every_node_that_is_not_ready_and_what_to_do(
    session: Session, node_payload: Callable[..., dict[str, Any]]
) -> None:
    _register(session, node_payload, "gpu-07", 7)  # Ray offers 8: one device unseen by the agent
    _register(session, node_payload, "gpu-09", 8)  # no Ray node yet
    _register(session, node_payload, "gpu-10", 8)  # ready
    ray_nodes = [
        _ray_node("gpu-07", {"GPU": 8}),
        _ray_node("gpu-08", {"GPU": 8}),  # no agent
        _ray_node("gpu-10", {"GPU": 8}),
        _ray_node("head", {}, pinned=False),  # the head: no devices, nothing to place there
        _ray_node("gpu-11", {"GPU": 8}, pinned=False),  # started without its soak_node_* resource
    ]

    view = cluster_view(session=session, ray_nodes=ray_nodes, places_by_node=True)

    rows = {row.name: row for row in view.nodes}
    assert [(r.resource, r.ray, r.agent) for r in rows["gpu-07"].resources] == [("GPU", 8, 7)]
    assert rows["gpu-07"].problems == [
        "node gpu-07: its Ray node offers 8 GPU, its agent registered 7 device(s) that use GPU; find the device one "
        "side does not see (the agent's log and the vendor's tool, e.g. nvidia-smi) or correct the Ray node's "
        "--resources"
    ]
    assert rows["gpu-08"].agent_registered is False
    assert "no agent has registered it" in rows["gpu-08"].problems[0]
    assert "SOAK_AGENT_NODE_NAME=gpu-08" in rows["gpu-08"].problems[0]
    assert rows["gpu-09"].ray_node_id is None
    assert "no live Ray node carries soak_node_gpu-09" in rows["gpu-09"].problems[0]
    assert "--resources='{\"soak_node_gpu-09\": 1}'" in rows["gpu-09"].problems[0]
    assert rows["gpu-10"].problems == []
    assert rows["gpu-10"].pinned is True
    assert rows["head"].problems == []
    assert "carries no soak_node_* resource" in rows["gpu-11"].problems[0]
    assert len(view.problems) == 4


def test_a_cluster_the_controller_started_pins_nothing_and_flags_nothing(
    session: Session, node_payload: Callable[..., dict[str, Any]]
) -> None:
    _register(session, node_payload, "gpu-07", 7)
    local = _ray_node("this-host", {"SOAK_SIM": 64}, pinned=False)

    view = cluster_view(session=session, ray_nodes=[local], places_by_node=False)
    unread = cluster_view(session=session, ray_nodes=None, places_by_node=False)

    assert view.problems == [] and view.ray is True
    assert {row.name for row in view.nodes} == {"gpu-07", "this-host"}
    assert unread.ray is False and [row.name for row in unread.nodes] == ["gpu-07"]


def test_soak_check_weighs_only_the_nodes_a_plan_names(
    session: Session, node_payload: Callable[..., dict[str, Any]]
) -> None:
    _register(session, node_payload, "gpu-07", 7)
    _register(session, node_payload, "gpu-10", 8)
    ray_nodes = [_ray_node("gpu-07", {"GPU": 8}), _ray_node("gpu-10", {"GPU": 8})]
    view = cluster_view(session=session, ray_nodes=ray_nodes, places_by_node=True).model_dump(mode="json")

    def plan(*selectors: dict[str, Any]) -> Plan:
        return parse_plan({"name": "p", "duration": "1h", "devices": list(selectors), "workloads": [{"name": "gemm"}]})

    assert fleet_problems(plan({"vendor": "nvidia", "nodes": ["gpu-10"]}), view) == []
    assert fleet_problems(plan({"vendor": "nvidia", "nodes": ["gpu-10", "gpu-07"]}), view) == view["problems"]
    # One selector open to any node: every node's problems count.
    assert (
        fleet_problems(plan({"vendor": "nvidia", "nodes": ["gpu-10"]}, {"vendor": "nvidia"}), view) == view["problems"]
    )
    [unknown] = fleet_problems(plan({"vendor": "nvidia", "nodes": ["gpu-10", "gpu-99"]}), view)
    assert unknown.startswith("node gpu-99: the plan names it, but no agent has registered it and no Ray node")

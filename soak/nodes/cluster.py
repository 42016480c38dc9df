"""The fleet as Ray and the agents see it: which nodes lack an agent or a Ray node, and which disagree on devices."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.orm import Session

from soak.nodes import service
from soak.nodes.models import Node
from soak.nodes.schemas import ClusterNodeOut, ClusterOut, ClusterResourceOut
from soak.scheduler.discovery import NODE_RESOURCE_PREFIX, RayNode, node_resource
from soak.workloads.registry import load_backend


def _agent_devices(session: Session) -> dict[str, Counter[str]]:
    """Node name: its registered devices counted by the Ray resource their workers hold (none for the CPU)."""
    counted: dict[str, Counter[str]] = {}
    for device, node in service.list_devices(session=session):
        try:
            resource = load_backend(device.backend).ray_resource
        except KeyError:  # a backend this controller cannot load places no worker, so it holds nothing
            continue
        if resource is not None:
            counted.setdefault(node.name, Counter())[resource] += 1
    return counted


def cluster_view(*, session: Session, ray_nodes: list[RayNode] | None, places_by_node: bool) -> ClusterOut:
    """Registered nodes next to the live Ray nodes; `ray_nodes` None when there is no cluster to read."""
    registered = {node.name: node for node in service.list_nodes(session=session)}
    agent_devices = _agent_devices(session)
    live = ray_nodes or []
    by_name = {ray_node.name: ray_node for ray_node in live if ray_node.pinned}
    rows: list[ClusterNodeOut] = []
    for name in sorted(registered.keys() | by_name.keys()):
        ray_node = by_name.get(name)
        problems = (
            _problems(name, registered.get(name), ray_node, agent_devices.get(name, Counter()))
            if ray_nodes is not None and places_by_node
            else []
        )
        rows.append(_row(name, registered.get(name), ray_node, agent_devices.get(name, Counter()), problems))
    # Ray nodes that are no soak node: the one node of a local cluster, or a node started without its pin.
    for ray_node in live:
        if ray_node.pinned:
            continue
        problems = []
        if places_by_node and ray_node.devices:
            offered = ", ".join(f"{count} {resource}" for resource, count in ray_node.devices.items())
            problems.append(
                f"Ray node {ray_node.hostname} ({ray_node.address}) offers {offered} but carries no "
                f"{NODE_RESOURCE_PREFIX}* resource, so soak places no worker there; restart it with "
                f"`ray start --resources='{{\"{node_resource('<node>')}\": 1}}'`, <node> as its agent registers it"
            )
        rows.append(_row(ray_node.name, None, ray_node, Counter(), problems))
    return ClusterOut(
        ray=ray_nodes is not None,
        places_by_node=places_by_node,
        nodes=rows,
        problems=[problem for row in rows for problem in row.problems],
    )


def _row(
    name: str, node: Node | None, ray_node: RayNode | None, devices: Counter[str], problems: list[str]
) -> ClusterNodeOut:
    offered = ray_node.devices if ray_node is not None else {}
    return ClusterNodeOut(
        name=name,
        agent_registered=node is not None,
        agent_last_seen_at=node.last_seen_at if node is not None else None,
        ray_node_id=ray_node.node_id if ray_node is not None else None,
        ray_address=ray_node.address if ray_node is not None else None,
        pinned=ray_node is not None and ray_node.pinned,
        resources=[
            ClusterResourceOut(resource=resource, ray=offered.get(resource, 0), agent=devices.get(resource, 0))
            for resource in sorted(offered.keys() | devices.keys())
        ],
        problems=problems,
    )


def _problems(name: str, node: Node | None, ray_node: RayNode | None, devices: Counter[str]) -> list[str]:
    if ray_node is None:
        return [
            f"node {name}: registered by its agent, but no live Ray node carries {node_resource(name)}, so its "
            f"devices' workers wait until one joins; on {name}, run `ray start --address=HEAD:6379 "
            f"--resources='{{\"{node_resource(name)}\": 1}}'`"
        ]
    if node is None:
        return [
            f"node {name}: its Ray node is in the cluster but no agent has registered it, so its devices are unknown "
            f"to soak; on {name}, start `soak agent` with SOAK_AGENT_NODE_NAME={name}, or set "
            "SOAK_AGENTS_AS_RAY_ACTORS=true on the controller"
        ]
    return [
        f"node {name}: its Ray node offers {ray_node.devices.get(resource, 0)} {resource}, its agent registered "
        f"{devices.get(resource, 0)} device(s) that use {resource}; find the device one side does not see (the "
        "agent's log and the vendor's tool, e.g. nvidia-smi) or correct the Ray node's --resources"
        for resource in sorted(ray_node.devices.keys() | devices.keys())
        if ray_node.devices.get(resource, 0) != devices.get(resource, 0)
    ]

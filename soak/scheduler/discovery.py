"""What the Ray cluster says about the fleet: its live nodes, the soak node each one is, and its accelerators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from soak.workloads.registry import load_backend

NODE_RESOURCE_PREFIX = "soak_node_"


def node_resource(node_name: str) -> str:
    """The custom resource a Ray node carries to say which soak node it is (set by deploy scripts and tests)."""
    return f"{NODE_RESOURCE_PREFIX}{node_name}"


def accelerator_resources() -> frozenset[str]:
    """The Ray resources a device backend's worker holds (GPU, NPU, MLU, MUSA, SUPA, SOAK_SIM...)."""
    found: set[str] = set()
    for point in entry_points(group="soak.backends"):
        try:
            resource = load_backend(point.name).ray_resource
        except KeyError:  # a backend that failed to load (logged by the registry) offers nothing
            continue
        if resource is not None:
            found.add(resource)
    return frozenset(found)


@dataclass(frozen=True)
class RayNode:
    """One live Ray node as soak sees it."""

    node_id: str
    name: str
    """The soak node it carries (`soak_node_<name>`), else its host name."""
    pinned: bool
    """Whether it carries a `soak_node_*` resource, so that workers can be pinned to it."""
    address: str
    hostname: str
    devices: dict[str, int] = field(default_factory=dict)
    """Accelerator resource: how many the node offers."""
    resources: dict[str, float] = field(default_factory=dict)
    """Every resource the node offers, as Ray counts them."""


def read_ray_nodes(table: Iterable[Mapping[str, Any]]) -> list[RayNode]:
    """The live nodes of `ray.nodes()`'s table, ordered by name."""
    accelerators = accelerator_resources()
    found: list[RayNode] = []
    for entry in table:
        if not entry.get("Alive"):
            continue
        resources = {str(key): float(value) for key, value in dict(entry.get("Resources", {})).items()}
        prefix = NODE_RESOURCE_PREFIX
        pins = sorted(key.removeprefix(prefix) for key in resources if key.startswith(prefix))
        hostname = str(entry.get("NodeManagerHostname", ""))
        address = str(entry.get("NodeManagerAddress", ""))
        found.append(
            RayNode(
                node_id=str(entry.get("NodeID", "")),
                name=pins[0] if pins else hostname or address,
                pinned=bool(pins),
                address=address,
                hostname=hostname,
                devices={key: int(value) for key, value in sorted(resources.items()) if key in accelerators},
                resources=resources,
            )
        )
    return sorted(found, key=lambda node: (node.name, node.node_id))

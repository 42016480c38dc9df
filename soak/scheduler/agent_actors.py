"""Node agents as Ray actors: one per Ray node that carries `soak_node_<name>` and that no agent has registered."""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.orm import Session

from soak.auth import service as auth
from soak.auth.models import Role
from soak.auth.schemas import TokenIn
from soak.config import Settings
from soak.nodes import service as nodes
from soak.scheduler.discovery import RayNode, node_resource
from soak.scheduler.ray_executor import NAMESPACE

log = logging.getLogger(__name__)
SIM_NAME = re.compile(r"^sim(\d+)$")


def agent_actor_name(node_name: str) -> str:
    """The Ray actor name of a node's agent: a restarted controller finds the agent by it instead of adding one."""
    return f"soak-agent-{node_name}"


def start_agent_actors(*, session: Session, settings: Settings, ray_nodes: list[RayNode]) -> list[str]:
    """Start an agent on each pinned Ray node that no agent registered and none runs on; the nodes started on."""
    import ray

    from agents.ray_actor import AgentActor

    registered = {node.name for node in nodes.list_nodes(session=session)}
    # Simulated devices are named sim<N> fleet-wide: a new node's numbers follow every number registered so far.
    next_sim = 1 + max(
        (
            int(match.group(1))
            for device, _ in nodes.list_devices(session=session)
            if (match := SIM_NAME.match(device.name))
        ),
        default=-1,
    )
    actor_class = ray.remote(AgentActor)
    started: list[str] = []
    for ray_node in ray_nodes:
        if not ray_node.pinned or ray_node.name in registered:
            continue
        name = agent_actor_name(ray_node.name)
        try:
            ray.get_actor(name, namespace=NAMESPACE)
            continue  # started earlier and still registering, or by a controller before this one
        except ValueError:
            pass
        simulated = ray_node.devices.get("SOAK_SIM", 0)
        config = _agent_config(session=session, settings=settings, ray_node=ray_node, sim_first_index=next_sim)
        actor_class.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            resources={node_resource(ray_node.name): 0.001},
            # Its loop runs in a thread; status() and stop() answer meanwhile.
            max_concurrency=2,
            # Back with its node after an outage, or after its agent failed (the actor then exits).
            max_restarts=-1,
        ).remote(config)
        next_sim += simulated
        started.append(ray_node.name)
        log.warning("started the agent of node %s as Ray actor %s", ray_node.name, name)
    return started


def _agent_config(*, session: Session, settings: Settings, ray_node: RayNode, sim_first_index: int) -> dict[str, Any]:
    """The node's AgentSettings, with a token that may register and push for that node only."""
    _, token = auth.create_token(
        session=session, token_in=TokenIn(name=agent_actor_name(ray_node.name), role=Role.AGENT, node=ray_node.name)
    )
    return {
        "controller_url": settings.agent_actor_controller_url or f"http://{settings.host}:{settings.port}",
        "api_token": token,
        "node_name": ray_node.name,
        "data_dir": str(settings.agent_actor_data_dir / ray_node.name),
        "simulated": ray_node.devices.get("SOAK_SIM", 0),
        "sim_first_index": sim_first_index,
        "cpu_device": settings.agent_actor_cpu_device,
        "metrics_host": ray_node.address,
        "metrics_port": settings.agent_actor_metrics_port,
    }

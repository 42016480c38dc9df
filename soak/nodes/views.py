"""Node and device routes: agents register, users list."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from soak.deps import ERRORS, AgentNode, SessionDep, SettingsDep, Viewer
from soak.nodes import service
from soak.nodes.cluster import cluster_view
from soak.nodes.schemas import ClusterOut, DeviceOut, NodeIn, NodeOut
from soak.nodes.targets import write_scrape_targets

router = APIRouter(prefix="/api/v1", tags=["nodes"], responses=ERRORS)


@router.put("/nodes/{name}")
def register_node(session: SessionDep, settings: SettingsDep, node_in: NodeIn, name: AgentNode) -> NodeOut:
    """An agent announces itself and its devices (idempotent); Prometheus learns to scrape it."""
    try:
        node = service.register_node(session=session, name=name, node_in=node_in)
    except service.DeviceOwnedElsewhere as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    if settings.prometheus_targets_file is not None:
        write_scrape_targets(
            path=settings.prometheus_targets_file,
            controller_address=f"{settings.host}:{settings.port}",
            nodes=service.list_nodes(session=session),
        )
    return NodeOut.model_validate(node)


@router.get("/nodes", dependencies=[Viewer])
def list_nodes(session: SessionDep) -> list[NodeOut]:
    """Every node that ever registered."""
    return [NodeOut.model_validate(node) for node in service.list_nodes(session=session)]


@router.get("/devices", dependencies=[Viewer])
def list_devices(session: SessionDep) -> list[DeviceOut]:
    """Every device, with its node and the campaign holding it."""
    return [
        DeviceOut.model_validate({**device.__dict__, "node": node.name})
        for device, node in service.list_devices(session=session)
    ]


@router.get("/cluster", dependencies=[Viewer])
def cluster(session: SessionDep, request: Request) -> ClusterOut:
    """Which Ray nodes offer which accelerators, whether an agent registered each with as many devices: check
    it before a campaign (`problems` is empty when the fleet is ready)."""
    supervisor = getattr(request.app.state, "supervisor", None)
    try:
        ray_nodes, places_by_node = supervisor.cluster_nodes() if supervisor is not None else (None, False)
    except (ConnectionError, RuntimeError) as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"cannot read the Ray cluster at SOAK_RAY_ADDRESS ({error}); check that its head runs and is reachable",
        ) from None
    return cluster_view(session=session, ray_nodes=ray_nodes, places_by_node=places_by_node)

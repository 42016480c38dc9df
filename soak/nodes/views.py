"""Node and device routes: agents register, users list."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from soak.deps import ERRORS, AgentNode, SessionDep, SettingsDep, Viewer
from soak.nodes import service
from soak.nodes.schemas import DeviceOut, NodeIn, NodeOut
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

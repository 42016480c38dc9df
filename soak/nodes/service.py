"""Fleet inventory: node registration, device selection and reservation."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from soak.db import utcnow
from soak.nodes.models import Device, Node
from soak.nodes.schemas import DeviceIn, NodeIn
from soak.plan import DeviceSelector
from soak.telemetry.models import Event


class PlacementError(RuntimeError):
    """The fleet cannot give the plan the devices it asks for."""


class DeviceOwnedElsewhere(ValueError):
    """A device name is already registered by another node."""


def register_node(*, session: Session, name: str, node_in: NodeIn) -> Node:
    """Create or update a node and its devices; devices it no longer reports stay, for history."""
    node = session.scalar(select(Node).where(Node.name == name))
    if node is None:
        node = Node(name=name, hostname=node_in.hostname, inbox_dir=node_in.inbox_dir, sim_state_dir="")
        session.add(node)
    node.hostname = node_in.hostname
    node.agent_url = node_in.agent_url
    node.inbox_dir = node_in.inbox_dir
    node.sim_state_dir = node_in.sim_state_dir
    node.last_seen_at = utcnow()
    session.flush()
    existing = {
        device.name: device
        for device in session.scalars(
            select(Device).where(Device.name.in_([device_in.name for device_in in node_in.devices]))
        )
    }
    for device_in in node_in.devices:
        device = existing.get(device_in.name)
        if device is None:
            device = Device(node_id=node.id, **device_in.model_dump())
            session.add(device)
        elif device.node_id != node.id:
            session.rollback()
            raise DeviceOwnedElsewhere(
                f"devices: {device_in.name!r} is registered by another node; give each device a fleet-unique name"
            )
        else:
            _record_stack_changes(session, device, device_in)
            for key, value in device_in.model_dump().items():
                setattr(device, key, value)
    session.commit()
    return node


def _record_stack_changes(session: Session, device: Device, device_in: DeviceIn) -> None:
    """A driver or firmware that changed under a running campaign is an event its detectors compare across."""
    if device.campaign_id is None:
        return
    now_s = time.time()
    for component, old, new in (
        ("driver", device.driver_version, device_in.driver_version),
        ("firmware", device.firmware_version, device_in.firmware_version),
    ):
        if old is None or new is None or old == new:
            continue
        session.add(
            Event(
                campaign_id=device.campaign_id,
                node_id=device.node_id,
                device_id=device.id,
                time_s=now_s,
                kind="stack_change",
                severity="info",
                message=f"{device.name}: {component} {old} → {new}",
                raw=json.dumps({"component": component, "old": old, "new": new}),
            )
        )


def touch_node(*, session: Session, node: Node) -> None:
    """Mark a node as seen now."""
    node.last_seen_at = utcnow()


def get_node(*, session: Session, name: str) -> Node | None:
    """A node by name."""
    return session.scalar(select(Node).where(Node.name == name))


def list_nodes(*, session: Session) -> list[Node]:
    """Every registered node."""
    return list(session.scalars(select(Node).order_by(Node.name)))


def list_devices(*, session: Session, campaign_id: int | None = None) -> list[tuple[Device, Node]]:
    """Devices with their nodes, optionally only those a campaign holds."""
    statement = select(Device, Node).join(Node, Device.node_id == Node.id).order_by(Node.name, Device.index)
    if campaign_id is not None:
        statement = statement.where(Device.campaign_id == campaign_id)
    return [(device, node) for device, node in session.execute(statement).all()]


def _matches(selector: DeviceSelector, device: Device, node: Node) -> bool:
    if selector.simulated is not None:
        wanted_kind = device.simulated
    else:
        wanted_kind = not device.simulated and (
            selector.vendor is None or device.vendor.lower() == selector.vendor.lower()
        )
        wanted_kind = wanted_kind and (selector.model is None or selector.model.lower() in device.model.lower())
    return wanted_kind and (selector.nodes is None or node.name in selector.nodes)


def select_devices(*, session: Session, selectors: Sequence[DeviceSelector]) -> list[Device]:
    """Free devices that satisfy every selector, in order; PlacementError names the selector that cannot be met."""
    free = [pair for pair in list_devices(session=session) if pair[0].campaign_id is None]
    chosen: list[Device] = []
    for position, selector in enumerate(selectors):
        candidates = [device for device, node in free if _matches(selector, device, node) and device not in chosen]
        wanted = selector.wanted
        if wanted is None:
            wanted = max(len(candidates), 1)
        if len(candidates) < wanted:
            what = "simulated devices" if selector.simulated is not None else "matching devices"
            raise PlacementError(
                f"devices[{position}]: the plan asks for {wanted} {what}, the fleet has {len(candidates)} free "
                f"({_describe(selector)}); register more nodes or lower the count"
            )
        chosen.extend(candidates[:wanted])
    return chosen


def _describe(selector: DeviceSelector) -> str:
    parts = [f"{key}={value}" for key, value in selector.model_dump(exclude_none=True).items()]
    return ", ".join(parts)


def reserve(*, session: Session, devices: Sequence[Device], campaign_id: int) -> None:
    """Give devices to a campaign."""
    session.execute(update(Device).where(Device.id.in_([d.id for d in devices])).values(campaign_id=campaign_id))
    session.commit()


def release(*, session: Session, campaign_id: int) -> None:
    """Free every device a campaign held."""
    session.execute(update(Device).where(Device.campaign_id == campaign_id).values(campaign_id=None))
    session.commit()

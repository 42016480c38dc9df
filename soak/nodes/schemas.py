"""Node and device API shapes: what an agent registers and what users list."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from soak.errors import INT32_MAX
from soak.telemetry.schemas import NAME_PATTERN


class DeviceIn(BaseModel):
    """A device as its node agent discovered it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="unique in the fleet, e.g. gpu-07/cuda3 or sim3")
    backend: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", max_length=32, description="device backend, e.g. cpu, cuda, npu, sim"
    )
    index: int = Field(default=0, ge=0, le=INT32_MAX)
    vendor: str = Field(max_length=64)
    model: str = Field(max_length=128)
    uuid: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128)
    bus_id: str | None = Field(default=None, max_length=64)
    driver_version: str | None = Field(default=None, max_length=64)
    firmware_version: str | None = Field(default=None, max_length=64)
    memory_total_bytes: int | None = Field(default=None, ge=0, le=2**63 - 1)
    simulated: bool = False


class NodeIn(BaseModel):
    """A node agent's registration: who it is, where its workers report, and its devices."""

    model_config = ConfigDict(extra="forbid")

    hostname: str = Field(max_length=255)
    agent_url: str | None = Field(default=None, max_length=255)
    inbox_dir: str = Field(max_length=1024, description="directory where workers leave reports for the agent")
    sim_state_dir: str = Field(max_length=1024, description="directory simulated devices publish state to")
    devices: list[DeviceIn] = Field(default_factory=list, max_length=1024)

    @field_validator("devices")
    @classmethod
    def _names_unique(cls, devices: list[DeviceIn]) -> list[DeviceIn]:
        names = [device.name for device in devices]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"device names must differ; {', '.join(map(repr, repeated))} is given more than once")
        return devices


class DeviceOut(DeviceIn):
    """A device as the API shows it."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: int
    node: str
    campaign_id: int | None


class NodeOut(BaseModel):
    """A node as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    hostname: str
    agent_url: str | None
    registered_at: datetime
    last_seen_at: datetime


class ClusterResourceOut(BaseModel):
    """One accelerator resource of a node: what its Ray node offers against what its agent registered."""

    resource: str = Field(description="Ray resource: GPU, NPU, MLU, SOAK_SIM...")
    ray: int = Field(description="how many the node's Ray node offers")
    agent: int = Field(description="devices its agent registered that a worker holds this resource for")


class ClusterNodeOut(BaseModel):
    """A node as the Ray cluster and the agents see it."""

    name: str
    agent_registered: bool
    agent_last_seen_at: datetime | None
    ray_node_id: str | None = Field(description="the live Ray node that is this node; null when none is")
    ray_address: str | None
    pinned: bool = Field(description="whether that Ray node carries soak_node_<name>, so workers can be pinned to it")
    resources: list[ClusterResourceOut]
    problems: list[str] = Field(description="what keeps the node's devices from a campaign, each with its fix")


class ClusterOut(BaseModel):
    """The fleet before a campaign: which Ray nodes offer what, and whether an agent registered each."""

    ray: bool = Field(description="whether the Ray cluster was read (false: local executor, or Ray not started)")
    places_by_node: bool = Field(description="whether workers are pinned to their node's Ray node")
    nodes: list[ClusterNodeOut]
    problems: list[str] = Field(description="every node's problems; none means the fleet is ready")

"""The collector protocol: each source yields fresh samples and events every cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from agents.config import AgentSettings
from soak.nodes.schemas import DeviceIn


@dataclass
class Collected:
    """What one collector read in one cycle, in the controller's sample and event shapes."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, time_s: float, metric: str, value: float, device: str | None = None) -> None:
        """Add one sample."""
        self.samples.append({"time_s": time_s, "device": device, "metric": metric, "value": float(value)})


@dataclass(frozen=True)
class CollectContext:
    """What the agent knows that collectors may need: worker processes, and devices by PCI bus id."""

    worker_pids: dict[str, int]
    device_by_bus: dict[str, str] = field(default_factory=dict)  # as collectors registered them


class Collector(Protocol):
    """A source of telemetry; 'not supported here' is no data, never an exception."""

    name: ClassVar[str]

    def __init__(self, settings: AgentSettings) -> None: ...

    def devices(self) -> list[DeviceIn]:
        """Devices this collector discovered (registered with the controller)."""
        ...

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        """Read the source once."""
        ...

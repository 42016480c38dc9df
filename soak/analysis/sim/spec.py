"""What fleet to simulate: its size, length, resolution and seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from soak.analysis.sim.taxonomy import FAULT_CLASSES

# 2026-11-02 00:00:00 UTC: a Monday, so the diurnal cycle and the device-weeks line up with the calendar.
DEFAULT_START_S = 1_793_577_600.0
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class FleetSpec:
    """A simulated campaign: `devices` identical accelerators, `devices_per_node` to a node, for `days`."""

    seed: int = 0
    devices: int = 64
    devices_per_node: int = 8
    days: float = 28.0
    sample_interval_s: float = 10.0
    start_s: float = DEFAULT_START_S
    warmup_s: float = 1800.0
    # Share of devices that get a fault, drawn once per fleet (the rest stay healthy throughout).
    min_faulty_share: float = 0.25
    max_faulty_share: float = 0.35
    # Inject only these fault classes, equally often (to score one detector on many faults); empty: the taxonomy.
    only_classes: tuple[str, ...] = ()
    # Range of each device's mean stretch at its power cap, seconds. The power controller acts within a second
    # and a steady workload's step phases cross the cap many times a minute, so stretches last seconds to
    # minutes; (300, 1800) makes them slow swings that 5-minute means cannot average out (a harsher fleet).
    power_cap_dwell_s: tuple[float, float] = (20.0, 120.0)
    # Range of the correlation time of each device's 1 % throughput noise, seconds (data-loader stalls,
    # collective jitter, host interference).
    throughput_noise_correlation_s: tuple[float, float] = (30.0, 120.0)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be zero or more, got {self.seed}")
        if self.devices < 1 or self.devices_per_node < 1:
            raise ValueError(
                f"devices and devices_per_node must be at least 1, got {self.devices} and {self.devices_per_node}"
            )
        if self.sample_interval_s <= 0 or self.days * SECONDS_PER_DAY < 100 * self.sample_interval_s:
            raise ValueError(
                f"the campaign must hold at least 100 samples, got {self.days} days at {self.sample_interval_s} s"
            )
        if not 0.0 <= self.warmup_s < self.duration_s / 2:
            raise ValueError(f"warmup_s must be between 0 and half the campaign, got {self.warmup_s}")
        unknown = sorted(set(self.only_classes) - FAULT_CLASSES)
        if unknown:
            raise ValueError(f"only_classes names unknown fault classes {unknown}; known: {sorted(FAULT_CLASSES)}")
        for name in ("power_cap_dwell_s", "throughput_noise_correlation_s"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {(low, high)}")
        if not 0.0 <= self.min_faulty_share <= self.max_faulty_share <= 1.0:
            raise ValueError(
                "faulty shares must satisfy 0 <= min_faulty_share <= max_faulty_share <= 1, "
                f"got {self.min_faulty_share} and {self.max_faulty_share}"
            )

    @property
    def duration_s(self) -> float:
        """Length of the campaign in seconds."""
        return self.days * SECONDS_PER_DAY

    @property
    def end_s(self) -> float:
        """Epoch seconds at which the campaign ends."""
        return self.start_s + self.duration_s

    @property
    def samples(self) -> int:
        """Samples per series of a device that reports throughout."""
        return int(self.duration_s // self.sample_interval_s)

    @property
    def nodes(self) -> int:
        """Number of nodes; the last one holds fewer devices when `devices` does not divide evenly."""
        return math.ceil(self.devices / self.devices_per_node)

    def node_name(self, node_index: int) -> str:
        """The name of a node, e.g. "node-03"."""
        return f"node-{node_index:02d}"

    def device_name(self, device_index: int) -> str:
        """The name of a device, e.g. "node-03-gpu5"."""
        node_index, slot = divmod(device_index, self.devices_per_node)
        return f"{self.node_name(node_index)}-gpu{slot}"

    def devices_of_node(self, node_index: int) -> list[int]:
        """Indices of the devices on a node."""
        first = node_index * self.devices_per_node
        return list(range(first, min(first + self.devices_per_node, self.devices)))

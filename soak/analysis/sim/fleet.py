"""The simulated fleet: planned once from the seed, then generated one device at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from soak.analysis.sim.draft import DeviceDraft
from soak.analysis.sim.faults import FaultEffect
from soak.analysis.sim.healthy import GIB, VOLATILE_COUNTERS, FleetClimate, draw_climate, fill_healthy, finish_counters
from soak.analysis.sim.processes import FloatArray
from soak.analysis.sim.schedule import PlannedFault, plan_faults
from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.truth import FaultTruth
from soak.analysis.telemetry import DeviceTelemetry

VENDOR = "nvidia"
MODEL = "NVIDIA H100 80GB HBM3"
MEMORY_TOTAL_BYTES = 80.0 * GIB


@dataclass(frozen=True)
class FleetPlan:
    """Everything decided for the whole fleet before any device is generated."""

    spec: FleetSpec
    climate: FleetClimate
    faults: Sequence[PlannedFault]
    # One read-only sample clock for every device (a device that stops reporting uses a prefix or a subset).
    time_s: FloatArray

    @property
    def faults_by_device(self) -> Mapping[str, list[PlannedFault]]:
        """Each device's planned faults (a node fault appears under every device of the node)."""
        grouped: dict[str, list[PlannedFault]] = {}
        for fault in self.faults:
            for device in fault.devices:
                grouped.setdefault(device, []).append(fault)
        return grouped

    @property
    def healthy_devices(self) -> list[str]:
        """Devices without any fault for the whole campaign."""
        faulty = self.faults_by_device
        return [
            self.spec.device_name(index)
            for index in range(self.spec.devices)
            if self.spec.device_name(index) not in faulty
        ]


@dataclass(frozen=True)
class SimulatedDevice:
    """One generated device: what the detectors read, and the faults injected into it."""

    telemetry: DeviceTelemetry
    faults: tuple[FaultTruth, ...]


def plan_fleet(spec: FleetSpec) -> FleetPlan:
    """Draw the fleet's shared climate and its fault schedule from the seed."""
    rng = np.random.default_rng([spec.seed, 0])
    climate = draw_climate(rng, [spec.node_name(node) for node in range(spec.nodes)])
    faults = plan_faults(spec, rng)
    time_s = spec.start_s + spec.sample_interval_s * np.arange(spec.samples, dtype=np.float64)
    time_s.setflags(write=False)
    return FleetPlan(spec=spec, climate=climate, faults=faults, time_s=time_s)


def simulate_device(plan: FleetPlan, device_index: int) -> SimulatedDevice:
    """Generate one device of the planned fleet; the same plan and index always give the same device."""
    spec = plan.spec
    if not 0 <= device_index < spec.devices:
        raise ValueError(f"device_index must be between 0 and {spec.devices - 1}, got {device_index}")
    rng = np.random.default_rng([spec.seed, device_index + 1])
    name = spec.device_name(device_index)
    draft = DeviceDraft(
        device=name,
        node=spec.node_name(device_index // spec.devices_per_node),
        time_s=plan.time_s,
        sample_interval_s=spec.sample_interval_s,
        warmup_end_s=spec.start_s + spec.warmup_s,
        end_s=spec.end_s,
        memory_total_bytes=MEMORY_TOTAL_BYTES,
        allocated_share=float(rng.uniform(0.62, 0.72)),
        reserved_slack_bytes=float(rng.uniform(3.0, 6.0)) * GIB,
    )
    effects = [FaultEffect(fault, draft, rng) for fault in plan.faults_by_device.get(name, [])]
    for effect in effects:
        effect.shape()
    fill_healthy(draft, rng, plan.climate, plan.spec)
    for effect in effects:
        effect.alter()
    finish_counters(draft)
    telemetry = draft.telemetry(vendor=VENDOR, model=MODEL, start_s=spec.start_s, volatile=VOLATILE_COUNTERS)
    return SimulatedDevice(telemetry=telemetry, faults=tuple(effect.truth() for effect in effects))


def simulate_fleet(spec: FleetSpec) -> Iterator[SimulatedDevice]:
    """Every device of the fleet, one at a time, so that only the caller decides what to keep."""
    plan = plan_fleet(spec)
    for device_index in range(spec.devices):
        yield simulate_device(plan, device_index)

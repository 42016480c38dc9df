"""A seeded fleet simulator with injected faults and their ground truth, for scoring the detectors.

`simulate_fleet(FleetSpec(seed=3))` yields one device at a time (its telemetry as the detectors read it, and the
faults injected into it), so a 64-device, 28-day fleet at 10 s never sits in memory whole.
"""

from soak.analysis.sim.fleet import FleetPlan, SimulatedDevice, plan_fleet, simulate_device, simulate_fleet
from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.truth import FaultTruth, truth_document

__all__ = [
    "FaultTruth",
    "FleetPlan",
    "FleetSpec",
    "SimulatedDevice",
    "plan_fleet",
    "simulate_device",
    "simulate_fleet",
    "truth_document",
]

"""The fleet's fault schedule, drawn from the seed before any device is generated.

Planning the whole fleet first keeps a node's faults consistent across its devices and lets each device be
generated on its own, in any order, with the same result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from soak.analysis.sim import taxonomy as t
from soak.analysis.sim.spec import FleetSpec

# Onsets fall in the middle of the campaign: detectors get a baseline before and time to decide after.
ONSET_MARGIN_SHARE = 0.15

DRIVER_VERSIONS = ("550.90.07", "560.35.03", "570.124.06", "575.57.08")
FIRMWARE_VERSIONS = ("96.00.89.00.01", "96.00.99.00.01", "96.00.A5.00.01")
TORCH_VERSIONS = ("2.5.1+cu124", "2.6.0+cu126", "2.7.1+cu128")


@dataclass(frozen=True)
class PlannedFault:
    """A fault the simulator will inject: its class, variant, where, when, and its drawn magnitudes."""

    fault_id: str
    fault_class: str
    variant: str
    node: str | None  # set when the whole node is affected
    devices: tuple[str, ...]
    onset_s: float
    params: Mapping[str, float | int | str]


def plan_faults(spec: FleetSpec, rng: np.random.Generator) -> list[PlannedFault]:
    """Faults for about 25-35 % of the devices, each device with at most one, node faults on whole nodes."""
    budget = round(spec.devices * rng.uniform(spec.min_faulty_share, spec.max_faulty_share))
    free = set(range(spec.devices))
    faults: list[PlannedFault] = []
    attempts = 0
    while spec.devices - len(free) < budget and attempts < 1000:
        attempts += 1
        fault_class = str(rng.choice(spec.only_classes)) if spec.only_classes else t.draw_incident(rng)
        variant, params, whole_node = draw_fault(fault_class, rng)
        if whole_node:
            nodes = [node for node in range(spec.nodes) if set(spec.devices_of_node(node)) <= free]
            if not nodes:
                continue
            node_index = int(rng.choice(nodes))
            indices = spec.devices_of_node(node_index)
            node: str | None = spec.node_name(node_index)
        else:
            indices = [int(rng.choice(sorted(free)))]
            node = None
        free -= set(indices)
        onset_s = rng.uniform(
            spec.start_s + ONSET_MARGIN_SHARE * spec.duration_s, spec.end_s - ONSET_MARGIN_SHARE * spec.duration_s
        )
        faults.append(
            PlannedFault(
                fault_id=f"s{spec.seed}-f{len(faults):02d}",
                fault_class=fault_class,
                variant=variant,
                node=node,
                devices=tuple(spec.device_name(index) for index in indices),
                onset_s=float(onset_s),
                params=params,
            )
        )
    return faults


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_fault(fault_class: str, rng: np.random.Generator) -> tuple[str, dict[str, float | int | str], bool]:
    """How one fault of the class shows itself (its variant), its magnitudes, and whether it takes the whole node."""
    if fault_class == t.FAULTY_GPU:
        code = int(rng.choice([79, 74, 62, 46, 109], p=[0.6, 0.1, 0.1, 0.1, 0.1]))
        variant = "fell_off_bus" if code == 79 else "needs_reset"
        return variant, {"xid": code, "reset_s": rng.uniform(180.0, 900.0)}, False
    if fault_class == t.HBM3_MEMORY:
        variant = str(rng.choice(["uncorrectable", "rising_correctable"], p=[0.6, 0.4]))
        return (
            variant,
            {
                "remap_failed": int(rng.random() < 0.3),
                "reset_s": rng.uniform(120.0, 600.0),
                "start_rate_per_hour": rng.uniform(1.0, 4.0),
                "doubling_hours": rng.uniform(4.0, 24.0),
                "uncorrectable_after_hours": rng.uniform(24.0, 96.0),
            },
            False,
        )
    if fault_class == t.SOFTWARE_BUG:
        variant = str(rng.choice(["crash_loop", "intermittent_crash", "recurring_hang"], p=[0.35, 0.3, 0.35]))
        mean_between_s = rng.uniform(15.0, 90.0) * 60.0 if variant == "intermittent_crash" else rng.uniform(1, 8) * 3600
        return variant, {"mean_between_s": mean_between_s}, False
    if fault_class == t.NETWORK:
        returns = rng.random() < 0.8
        return (
            "link_down" if returns else "link_dead",
            {"gap_s": _log_uniform(rng, 300.0, 4 * 3600.0), "returns": int(returns)},
            True,
        )
    if fault_class == t.HOST_MAINTENANCE:
        return "reboot", {"gap_s": rng.uniform(1200.0, 3 * 3600.0), "returns": 1}, True
    if fault_class == t.GPU_SRAM:
        variant = str(rng.choice(["uncontained", "contained_repeats"], p=[0.6, 0.4]))
        return (
            variant,
            {"repeats": int(rng.integers(3, 9)), "mean_between_s": rng.uniform(0.5, 4.0) * 3600, "reset_s": 300.0},
            False,
        )
    if fault_class == t.GSP:
        return "rpc_timeout", {"xid": int(rng.choice([119, 120])), "reset_s": rng.uniform(300.0, 1200.0)}, False
    if fault_class == t.SDC:
        return "wrong_results", {"mean_between_s": rng.uniform(1.0, 5.0) * 86_400}, False
    if fault_class == t.THERMAL_INTERFACE:
        return "interface_degrades", {"climb_hours": rng.uniform(6.0, 48.0), "excess_c": rng.uniform(3.0, 12.0)}, False
    if fault_class == t.DEVICE_MEMORY_LEAK:
        return "allocated_grows", {"rate_percent_per_hour": _log_uniform(rng, 0.3, 3.0)}, False
    if fault_class == t.RSS_LEAK:
        return "rss_grows", {"rate_mb_per_hour": _log_uniform(rng, 20.0, 500.0)}, False
    if fault_class == t.OPEN_FILES_LEAK:
        return "descriptors_grow", {"rate_per_hour": rng.uniform(2.0, 30.0)}, False
    if fault_class == t.THROUGHPUT_STEP:
        return "step", {"drop": rng.uniform(0.03, 0.15)}, False
    if fault_class == t.THROUGHPUT_DECAY:
        return "gradual", {"drop": rng.uniform(0.03, 0.15), "ramp_hours": rng.uniform(6.0, 72.0)}, False
    if fault_class == t.STACK_CHANGE:
        component = str(rng.choice(["driver", "firmware", "torch"], p=[0.4, 0.35, 0.25]))
        versions = {"driver": DRIVER_VERSIONS, "firmware": FIRMWARE_VERSIONS, "torch": TORCH_VERSIONS}[component]
        old = int(rng.integers(0, len(versions) - 1))
        regression = rng.random() < 0.5
        return (
            "regression" if regression else "benign",
            {
                "component": component,
                "old": versions[old],
                "new": versions[old + 1],
                "drop": rng.uniform(0.03, 0.10) if regression else 0.0,
            },
            component == "driver",  # a driver is installed on the whole node at once
        )
    if fault_class == t.PCIE_DEGRADED:
        variant = str(rng.choice(["width_x8", "gen4"]))
        return variant, {"replays_per_hour": _log_uniform(rng, 20.0, 500.0)}, False
    raise ValueError(f"unknown fault class {fault_class!r}")

"""What the scheduler hands a worker: the device it owns and, slot by slot, what to run until when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soak.workloads.collective import CollectiveGroup


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to drive one device for one campaign."""

    campaign_id: int
    campaign_start_s: float
    device_name: str
    backend: str
    device_index: int
    node_name: str
    inbox_dir: str
    sim_state_dir: str
    sample_interval_s: float
    seed: int
    faults: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Segment:
    """One rotation slot: run this workload entry of the plan until `until_s` (epoch seconds)."""

    workload: dict[str, Any]
    series: str  # the name its metrics carry: the workload's, qualified when the plan has it twice
    until_s: float
    run_id: int
    group: CollectiveGroup | None = None  # where a collective workload meets the slot's other members

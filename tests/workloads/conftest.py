"""A simulated accelerator opened the way a worker opens it, for workload tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from soak.scheduler.spec import WorkerSpec
from soak.workloads.backends import OpenDevice, SimulatedBackend


@pytest.fixture
def simulated_device(tmp_path: Path) -> OpenDevice:
    """Device sim0 of a campaign that starts now, publishing its state under tmp_path."""
    worker = WorkerSpec(
        campaign_id=1,
        campaign_start_s=time.time(),
        device_name="sim0",
        backend="sim",
        device_index=0,
        node_name="node0",
        inbox_dir=str(tmp_path / "inbox"),
        sim_state_dir=str(tmp_path),
        sample_interval_s=1.0,
        seed=0,
    )
    return SimulatedBackend.open(worker)

"""The host collector with real psutil, watching this test process as if it were a worker."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from agents.collectors.base import CollectContext
from agents.collectors.host import HostCollector, temperatures_c
from agents.config import AgentSettings
from soak.telemetry.schemas import METRIC_PATTERN, SampleIn


@pytest.fixture
def collector(tmp_path: Path) -> HostCollector:
    return HostCollector(AgentSettings(node_name="n1", data_dir=tmp_path))


def by_metric(collector: HostCollector, worker_pids: dict[str, int]) -> dict[tuple[str, str | None], float]:
    collected = collector.collect(time.time(), CollectContext(worker_pids=worker_pids))
    for sample in collected.samples:
        SampleIn.model_validate(sample)  # what the controller would refuse, the collector must not send
    return {(sample["metric"], sample["device"]): sample["value"] for sample in collected.samples}


def test_the_host_and_a_worker_process_are_measured(collector: HostCollector) -> None:
    values = by_metric(collector, {"sim0": os.getpid()})

    assert values[("host.memory_total_bytes", None)] >= values[("host.memory_used_bytes", None)] > 0
    assert values[("host.swap_total_bytes", None)] >= values[("host.swap_used_bytes", None)] >= 0
    assert 0.0 <= values[("host.cpu_ratio", None)] <= 1.0
    rss_bytes = values[("process.rss_bytes", "sim0")]
    assert rss_bytes > 0
    assert 0 < values[("process.uss_bytes", "sim0")] <= rss_bytes
    assert values[("process.threads", "sim0")] >= 1
    assert values[("process.open_files", "sim0")] >= 3  # stdin, stdout, stderr at least


def test_host_temperatures_are_what_the_kernel_exposes(collector: HostCollector) -> None:
    values = by_metric(collector, {})

    temperatures = {metric: value for (metric, _), value in values.items() if metric.startswith("host.temperature.")}
    readings = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    # A machine without sensors (a VM, a container) sends no temperature at all, not zeros.
    assert len(temperatures) == len({chip for chip, sensors in readings.items() if sensors})
    for metric in temperatures:
        assert re.fullmatch(METRIC_PATTERN, metric)


@dataclass(frozen=True)
class Sensor:
    current: float


def test_each_chip_reports_its_hottest_sensor_under_a_valid_metric_name() -> None:
    readings = {
        "coretemp": [Sensor(55.0), Sensor(48.0), Sensor(61.0)],
        "nvme": [Sensor(40.9)],
        "Weird-Chip 2": [Sensor(33.0)],
        "acpitz": [],
        "iwlwifi_1": [Sensor(math.nan)],
    }

    assert temperatures_c(readings) == {
        "host.temperature.coretemp_c": 61.0,
        "host.temperature.nvme_c": 40.9,
        "host.temperature.weird_chip_2_c": 33.0,
    }


def test_a_worker_that_exited_costs_its_own_samples_only(collector: HostCollector) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    values = by_metric(collector, {"sim0": int(finished.stdout), "sim1": os.getpid()})

    assert not [key for key in values if key[1] == "sim0"]
    assert values[("process.rss_bytes", "sim1")] > 0

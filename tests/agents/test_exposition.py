"""The agent's /metrics from the fake providers, against a golden file that promtool also lints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agents.collectors.base import CollectContext
from agents.collectors.npu_smi import NpuSmiCollector
from agents.collectors.nvml import NvmlCollector
from agents.config import AgentSettings
from agents.exporter import LatestValues
from agents.exposition import EXACT, family_of
from agents.nvml.recorded import RecordedNvml

FIXTURES = Path(__file__).parent.parent / "fixtures"
GOLDEN = FIXTURES / "exposition" / "agent.prom"
T0 = 1_795_900_000.0


def exposition() -> str:
    """What an agent with an H200 (recorded NVML), an Ascend box (recorded npu-smi) and one worker exposes."""
    settings = AgentSettings(node_name="gpu-07", cpu_device=False)
    nvml = NvmlCollector(settings, RecordedNvml.from_fixture(FIXTURES / "nvidia-h200"))
    answers = {("npu-smi", "info"): (FIXTURES / "smi" / "npu_smi" / "info_910b3_23.0.7.txt").read_text()}
    npu = NpuSmiCollector(settings, run=lambda argv: answers.get(tuple(argv)))
    values = LatestValues("gpu-07")
    try:
        values.describe_devices(nvml.devices() + npu.devices())
        for collector in (nvml, npu):
            values.update(collector.collect(T0, CollectContext(worker_pids={})).samples)
    finally:
        nvml.close()
    worker = [
        ("throughput.gemm", 612_000.0),
        ("latency.gemm.p99_ms", 12.5),
        ("efficiency.scaling.n2_ratio", 0.93),
        ("process.rss_bytes", 2.5e9),
    ]
    values.update([{"time_s": T0, "device": "gpu-07/cuda0", "metric": m, "value": v} for m, v in worker], campaign_id=7)
    event = {"time_s": T0, "device": "gpu-07/cuda0", "kind": "driver_error", "message": "", "raw": ""}
    values.count_events(
        [
            {**event, "code": 79, "severity": "critical"},
            {**event, "code": 13, "severity": "info"},
            {**event, "code": 13, "severity": "info"},
            {**event, "kind": "sdc", "severity": "critical"},
        ]
    )
    registry = CollectorRegistry()
    registry.register(values)
    return generate_latest(registry).decode()


def test_the_exposition_matches_the_golden_file() -> None:
    text = exposition()
    if os.environ.get("SOAK_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: review, then SOAK_UPDATE_GOLDEN=1 to accept"


def test_repeated_xids_count_up_per_code() -> None:
    text = exposition()
    assert 'soak_device_xid_errors_total{campaign="7",device="gpu-07/cuda0"' in text
    assert 'xid="13"} 2.0' in text and 'xid="79"} 1.0' in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with Debian's prometheus package")
def test_promtool_accepts_the_golden_file() -> None:
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=GOLDEN.read_text(), capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint warnings either


@pytest.mark.parametrize(
    ("metric", "name", "labels", "scale"),
    [
        ("device.sm_clock_mhz", "soak_device_sm_clock_hertz", {}, 1e6),
        ("device.clock_event.sw_power_cap", "soak_device_clock_event_active", {"reason": "sw_power_cap"}, 1.0),
        (
            "device.ecc_uncorrected_volatile_errors",
            "soak_device_ecc_errors",
            {"error": "uncorrected", "counter": "volatile"},
            1.0,
        ),
        ("latency.train.p99_ms", "soak_workload_step_latency_seconds", {"workload": "train", "percentile": "99"}, 1e-3),
        ("something.new_thing", "soak_something_new_thing", {}, 1.0),
    ],
)
def test_metric_names_map_to_base_units_and_labels(
    metric: str, name: str, labels: dict[str, str], scale: float
) -> None:
    family = family_of(metric)
    assert (family.name, family.labels, family.scale) == (name, labels, scale)


def test_every_catalogued_family_is_documented() -> None:
    documented = (Path(__file__).parent.parent.parent / "docs" / "metrics.md").read_text()
    for family in EXACT.values():
        assert f"`{family.name}{'_total' if family.kind == 'counter' else ''}`" in documented, family.name

"""Vendor SMI collectors end to end: a runner that answers with real CLI output, the real runner, no CLI at all."""

from __future__ import annotations

import logging
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from agents.collectors.amd_smi import ROCM_SMI_ARGS, AmdSmiCollector
from agents.collectors.base import CollectContext, Collected
from agents.collectors.cnmon import CnmonCollector
from agents.collectors.hy_smi import HY_SMI_ARGS, HY_SMI_MINIMAL_ARGS, HySmiCollector
from agents.collectors.ixsmi import QUERY_FIELDS, IxsmiCollector
from agents.collectors.mthreads_gmi import MthreadsGmiCollector
from agents.collectors.mx_smi import MxSmiCollector
from agents.collectors.npu_smi import DETAIL_INTERVAL_S, NpuSmiCollector
from agents.collectors.smi_command import SmiRunner
from agents.collectors.smi_reading import MIB_BYTES, SmiCollector
from agents.config import AgentSettings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "smi"
CONTEXT = CollectContext(worker_pids={})
ALL_COLLECTORS = [
    NpuSmiCollector,
    CnmonCollector,
    IxsmiCollector,
    MxSmiCollector,
    MthreadsGmiCollector,
    HySmiCollector,
    AmdSmiCollector,
]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class Answers:
    """A runner that answers known command lines with fixture text and records what was asked."""

    def __init__(self, answers: dict[tuple[str, ...], str]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> str | None:
        self.calls.append(tuple(argv))
        return self.answers.get(tuple(argv))


def settings() -> AgentSettings:
    return AgentSettings(node_name="gpu-07")


def samples_of(collected: Collected, device: str) -> dict[str, float]:
    return {sample["metric"]: sample["value"] for sample in collected.samples if sample["device"] == device}


@pytest.mark.parametrize("collector_class", ALL_COLLECTORS, ids=lambda cls: cls.name)
def test_absent_cli_is_no_devices_and_no_data(collector_class: type[SmiCollector]) -> None:
    """None of the vendor CLIs is installed on this machine: the real runner finds nothing, nothing raises."""
    collector = collector_class(settings())
    assert collector.devices() == []
    collected = collector.collect(1.0, CONTEXT)
    assert (collected.samples, collected.events) == ([], [])


def test_npu_collector_end_to_end() -> None:
    run = Answers(
        {
            ("npu-smi", "info"): fixture("npu_smi/info_910b3_23.0.7.txt"),
            ("npu-smi", "info", "-t", "common", "-i", "0"): fixture("npu_smi/common_910b1.txt"),
        }
    )
    collector = NpuSmiCollector(settings(), run=run)
    devices = collector.devices()
    assert [device.name for device in devices] == [f"gpu-07/npu{index}" for index in range(8)]
    first = devices[0]
    assert (first.backend, first.vendor, first.model, first.bus_id) == ("npu", "huawei", "Ascend 910B3", "0000:C1:00.0")
    assert (first.driver_version, first.memory_total_bytes) == ("23.0.7", 65536 * MIB_BYTES)

    collected = collector.collect(100.0, CONTEXT)
    assert samples_of(collected, "gpu-07/npu0") == {
        "device.temperature_c": 55.0,
        "device.power_w": 102.8,
        "device.sm_clock_mhz": 800.0,
        "device.utilization_ratio": 0.0,
        "device.memory_used_bytes": 3338 * MIB_BYTES,
        "device.memory_total_bytes": 65536 * MIB_BYTES,
        "device.health_status": 0.0,
    }
    assert "device.sm_clock_mhz" not in samples_of(collected, "gpu-07/npu1")  # no common output for NPU 1
    assert collected.events == []


def test_npu_collector_asks_for_chip_details_at_most_every_interval() -> None:
    run = Answers(
        {
            ("npu-smi", "info"): fixture("npu_smi/info_910b3_23.0.7.txt"),
            ("npu-smi", "info", "-t", "common", "-i", "0"): fixture("npu_smi/common_910b1.txt"),
        }
    )
    collector = NpuSmiCollector(settings(), run=run)
    clocks = [
        samples_of(collector.collect(now_s, CONTEXT), "gpu-07/npu0").get("device.sm_clock_mhz")
        for now_s in (100.0, 101.0, 100.0 + DETAIL_INTERVAL_S)
    ]
    assert clocks == [800.0, None, 800.0]
    assert len([call for call in run.calls if "common" in call]) == 2 * 8


def test_npu_fault_events_are_emitted_on_change_only() -> None:
    table = fixture("npu_smi/info_910b3_23.0.7.txt")
    alarm = table.replace("| 7     910B3               | OK     ", "| 7     910B3               | Alarm  ")
    run = Answers(
        {
            ("npu-smi", "info"): alarm,
            ("npu-smi", "info", "-t", "health", "-i", "7", "-c", "0"): fixture(
                "npu_smi/health_alarm_reconstructed.txt"
            ),
        }
    )
    collector = NpuSmiCollector(settings(), run=run)

    first = collector.collect(10.0, CONTEXT)
    assert samples_of(first, "gpu-07/npu7")["device.health_status"] == 2.0
    [event] = first.events
    assert event["device"] == "gpu-07/npu7"
    assert (event["kind"], event["severity"], event["code"], event["time_s"]) == (
        "driver_error",
        "critical",
        0x80E3A203,
        10.0,
    )
    assert "80E3A203" in event["raw"]

    assert collector.collect(11.0, CONTEXT).events == []  # the same fault again: no new event

    run.answers[("npu-smi", "info")] = table
    [cleared] = collector.collect(12.0, CONTEXT).events
    assert (cleared["device"], cleared["severity"], cleared["message"]) == ("gpu-07/npu7", "info", "faults cleared")


def test_npu_unhealthy_chip_without_health_detail_still_raises_a_fault() -> None:
    table = fixture("npu_smi/info_910b3_23.0.7.txt").replace(
        "| 2     910B3               | OK     ", "| 2     910B3               | Warning"
    )
    collector = NpuSmiCollector(settings(), run=Answers({("npu-smi", "info"): table}))
    [event] = collector.collect(5.0, CONTEXT).events
    assert (event["device"], event["severity"], event["code"]) == ("gpu-07/npu2", "warning", None)


def test_cnmon_collector_end_to_end() -> None:
    collector = CnmonCollector(settings(), run=Answers({("cnmon",): fixture("cnmon/cnmon_mlu370-x8_5.10.13.txt")}))
    [first, second] = collector.devices()
    assert (first.name, first.backend, first.vendor, first.firmware_version) == (
        "gpu-07/mlu0",
        "mlu",
        "cambricon",
        "v1.1.6",
    )
    assert second.bus_id == "0000:3D:00.0"
    samples = samples_of(collector.collect(3.0, CONTEXT), "gpu-07/mlu1")
    assert samples == {
        "device.temperature_c": 39.0,
        "device.power_w": 106.0,
        "device.power_limit_w": 250.0,
        "device.utilization_ratio": 0.0,
        "device.memory_used_bytes": 0.0,
        "device.memory_total_bytes": 23374 * MIB_BYTES,
    }


def test_cnmon_ecc_count_is_a_sample() -> None:
    collector = CnmonCollector(settings(), run=Answers({("cnmon",): fixture("cnmon/cnmon_5.10.31_redacted.txt")}))
    samples = samples_of(collector.collect(3.0, CONTEXT), "gpu-07/mlu0")
    assert samples["device.ecc_errors"] == 0.0
    assert "device.memory_total_bytes" not in samples


def test_ixsmi_collector_falls_back_to_the_other_power_field_name_and_keeps_it() -> None:
    query = ("ixsmi", f"--query-gpu={QUERY_FIELDS[1]}", "--format=csv,noheader,nounits")
    run = Answers({query: fixture("ixsmi/query_bi-v150_reconstructed.csv")})
    collector = IxsmiCollector(settings(), run=run)
    [first, _] = collector.devices()
    assert (first.name, first.backend, first.vendor, first.model) == (
        "gpu-07/cuda0",
        "cuda",
        "iluvatar",
        "Iluvatar BI-V150",
    )
    run.calls.clear()
    samples = samples_of(collector.collect(2.0, CONTEXT), "gpu-07/cuda1")
    assert (samples["device.power_w"], samples["device.power_limit_w"], samples["device.sm_clock_mhz"]) == (
        93.0,
        350.0,
        1500.0,
    )
    assert run.calls == [query]


def test_ixsmi_collector_reads_the_table_when_no_query_answers() -> None:
    collector = IxsmiCollector(settings(), run=Answers({("ixsmi",): fixture("ixsmi/ixsmi_bi-v150_4.1.0.txt")}))
    assert len(collector.devices()) == 16
    assert samples_of(collector.collect(2.0, CONTEXT), "gpu-07/cuda15")["device.temperature_c"] == 30.0


def test_mx_smi_collector_end_to_end() -> None:
    collector = MxSmiCollector(settings(), run=Answers({("mx-smi",): fixture("mx_smi/mx-smi_c550_2.2.4.txt")}))
    devices = collector.devices()
    assert [device.name for device in devices] == [f"gpu-07/cuda{index}" for index in range(8)]
    assert (devices[0].vendor, devices[0].driver_version, devices[0].firmware_version) == (
        "metax",
        "2.15.9",
        "1.25.1.0",
    )
    samples = samples_of(collector.collect(4.0, CONTEXT), "gpu-07/cuda7")
    assert (samples["device.power_w"], samples["device.power_limit_w"], samples["device.health_status"]) == (
        56.0,
        450.0,
        0.0,
    )


def test_mthreads_gmi_collector_end_to_end() -> None:
    collector = MthreadsGmiCollector(
        settings(), run=Answers({("mthreads-gmi",): fixture("mthreads_gmi/mthreads-gmi_s5000_2.3.2.txt")})
    )
    [first, _] = collector.devices()
    assert (first.name, first.backend, first.vendor, first.model) == (
        "gpu-07/musa0",
        "musa",
        "moorethreads",
        "MTT S5000",
    )
    samples = samples_of(collector.collect(4.0, CONTEXT), "gpu-07/musa1")
    assert samples == {
        "device.temperature_c": 51.0,
        "device.utilization_ratio": 0.0,
        "device.memory_used_bytes": 64889 * MIB_BYTES,
        "device.memory_total_bytes": 81920 * MIB_BYTES,
    }


def test_hy_smi_collector_retries_with_fewer_options() -> None:
    run = Answers({("hy-smi", *HY_SMI_MINIMAL_ARGS): fixture("hy_smi/hy-smi_z100l.txt")})
    collector = HySmiCollector(settings(), run=run)
    [device] = collector.devices()
    assert (device.name, device.vendor, device.model, device.serial) == (
        "gpu-07/cuda0",
        "hygon",
        "Z100L",
        "TCUM640016050701",
    )
    assert run.calls == [("hy-smi", *HY_SMI_ARGS), ("hy-smi", *HY_SMI_MINIMAL_ARGS)]


def test_hy_smi_collector_end_to_end() -> None:
    run = Answers({("hy-smi", *HY_SMI_ARGS): fixture("hy_smi/hy-smi_k100-ai.json")})
    samples = samples_of(HySmiCollector(settings(), run=run).collect(7.0, CONTEXT), "gpu-07/cuda1")
    assert samples == {
        "device.temperature_c": 36.0,
        "device.memory_temperature_c": 40.0,
        "device.power_w": 76.0,
        "device.utilization_ratio": 0.0,
        "device.memory_used_bytes": 2 * MIB_BYTES,
        "device.memory_total_bytes": 65520 * MIB_BYTES,
    }


def test_amd_collector_prefers_amd_smi() -> None:
    run = Answers({("amd-smi", "metric", "--json"): fixture("amd_smi/amd-smi_metric_reconstructed.json")})
    collector = AmdSmiCollector(settings(), run=run)
    [device] = collector.devices()
    assert (device.name, device.vendor, device.model) == ("gpu-07/cuda0", "amd", "AMD GPU")
    samples = samples_of(collector.collect(1.0, CONTEXT), "gpu-07/cuda0")
    assert (samples["device.power_w"], samples["device.sm_clock_mhz"]) == (20.0, 14.0)


def test_amd_collector_falls_back_to_rocm_smi() -> None:
    run = Answers({("rocm-smi", *ROCM_SMI_ARGS): fixture("amd_smi/rocm-smi_rx7900xtx.json")})
    samples = samples_of(AmdSmiCollector(settings(), run=run).collect(1.0, CONTEXT), "gpu-07/cuda0")
    assert (samples["device.temperature_c"], samples["device.memory_total_bytes"]) == (49.0, 25753026560)
    assert run.calls[0] == ("amd-smi", "metric", "--json")


def test_a_failing_read_does_not_fail_the_cycle(caplog: pytest.LogCaptureFixture) -> None:
    def broken(argv: Sequence[str]) -> str | None:
        raise RuntimeError("bug")

    collector = CnmonCollector(settings(), run=broken)
    with caplog.at_level(logging.WARNING):
        assert collector.collect(1.0, CONTEXT).samples == []
    assert "cnmon collector could not read" in caplog.text


def executable(tmp_path: Path, name: str, script: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_real_runner_returns_standard_output(tmp_path: Path) -> None:
    tool = executable(tmp_path, "fake-smi", 'echo "$@"\n')
    assert SmiRunner()([tool, "info", "-t", "health"]) == "info -t health\n"


def test_real_runner_failure_is_no_data_and_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tool = executable(tmp_path, "failing-smi", "echo 'dcmi error -8020' >&2\nexit 3\n")
    runner = SmiRunner()
    with caplog.at_level(logging.WARNING, logger="agents.collectors.smi_command"):
        assert runner([tool]) is None
        assert runner([tool]) is None
    [record] = caplog.records
    assert "exit status 3" in record.getMessage()
    assert "dcmi error -8020" in record.getMessage()


def test_real_runner_timeout_is_no_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tool = executable(tmp_path, "hung-smi", "sleep 5\n")
    with caplog.at_level(logging.WARNING, logger="agents.collectors.smi_command"):
        assert SmiRunner(timeout_s=0.2)([tool]) is None
    assert "no answer within 0.2 s" in caplog.text

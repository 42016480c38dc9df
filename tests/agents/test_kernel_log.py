"""Kernel-log driver errors: real lines of several drivers classified, kmsg and dmesg read incrementally."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from agents.collectors.base import CollectContext
from agents.collectors.kernel_log import KernelLine, KernelLogCollector, kernel_log_events, pci_key
from agents.config import AgentSettings

KMSG = Path(__file__).parent.parent / "fixtures" / "kmsg"
CONTEXT = CollectContext(worker_pids={})
DMESG_LINE = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")


@pytest.fixture
def settings() -> AgentSettings:
    return AgentSettings(node_name="gpu-07", cpu_device=False)


def lines_of(name: str) -> list[KernelLine]:
    lines = []
    for line in (KMSG / name).read_text().splitlines():
        match = DMESG_LINE.match(line)
        assert match is not None, line
        lines.append(KernelLine(float(match[1]), match[2]))
    return lines


def test_nvidia_xids_are_classified_and_keep_their_raw_lines() -> None:
    events = kernel_log_events(lines_of("nvidia.txt"), {"00000000:00:06.0": "gpu-07/cuda0"})
    assert [(event["code"], event["severity"], event["device"]) for event in events] == [
        (13, "info", "gpu-07/cuda0"),
        (109, "critical", "gpu-07/cuda0"),
        (31, "info", None),
        (94, "warning", None),
        (63, "warning", None),
        (94, "warning", None),
        (45, "info", None),
        (149, "critical", None),
        (3, "warning", None),
        (79, "critical", None),
        (79, "critical", None),
        (None, "critical", None),
        (None, "critical", None),
        (None, "critical", None),
    ]
    assert {event["kind"] for event in events} == {"driver_error"}
    graphics = events[0]
    assert graphics["message"].startswith("NVIDIA XID 13 (graphics engine exception) at PCI 0000:00:06:")
    assert graphics["raw"].count("\n") == 2  # the three lines of one XID 13 make one event
    assert "Illegal Instruction Parameter" in graphics["raw"]
    off_the_bus = events[9]
    assert "at PCI 0000:c6:00" in off_the_bus["message"] and "reboot" in off_the_bus["message"]
    assert off_the_bus["raw"].splitlines() == [
        "NVRM: Xid (PCI:0000:c6:00): 79, pid=1101234, name=nvc:[driver], GPU has fallen off the bus.",
        "NVRM: GPU 0000:c6:00.0: GPU has fallen off the bus.",
    ]
    assert "at PCI 0000:01:00" in events[10]["message"]
    assert "NV_ERR_RESET_REQUIRED" in events[11]["raw"] and "needs a reset" in events[11]["message"]
    assert "GSP heartbeat lost on GPU0" in events[12]["message"]
    assert "could not initialise the GPU at PCI 0000:09:00" in events[13]["message"]


def test_amdgpu_timeouts_resets_and_ras_errors() -> None:
    events = kernel_log_events(lines_of("amdgpu.txt"), {"0000:28:00.0": "gpu-07/hip0"})
    assert [(event["severity"], event["device"]) for event in events] == [
        ("warning", "gpu-07/hip0"),
        ("warning", "gpu-07/hip0"),
        ("warning", "gpu-07/hip0"),
        ("warning", None),
        ("critical", None),
    ]
    assert "GPU job timed out at PCI 0000:28:00" in events[0]["message"]
    assert "driver reset the GPU" in events[1]["message"]
    assert "device memory lost" in events[2]["message"]
    assert "ring gfx_0.0.0 timeout" in events[3]["raw"] and "on gfx_0.0.0" in events[3]["message"]
    assert "uncorrectable hardware (RAS) error at PCI 0000:1c:00" in events[4]["message"]
    assert {event["code"] for event in events} == {None}


def test_ascend_driver_errors() -> None:
    events = kernel_log_events(lines_of("ascend.txt"))
    assert [(event["severity"], event["message"].split(":")[0]) for event in events] == [
        ("critical", "Huawei Ascend NPU not responding (device abnormal) on dev_id 5"),
        ("warning", "Huawei Ascend NPU firmware exception reported on 0xa6193215"),
        ("info", "Huawei Ascend NPU memory page fault on dev_id 0"),
    ]
    assert events[0]["raw"].startswith("[ascend] [drv_pcie] [devdrv_sync_non_trans_msg_send 1239]")


def test_cambricon_xids_are_its_own_codes() -> None:
    corrected, uncorrected = kernel_log_events(lines_of("cambricon.txt"))
    assert (corrected["severity"], corrected["code"]) == ("warning", None)
    assert corrected["message"].startswith("Cambricon XID 3 (DDR/HBM ECC error) on Card1")
    assert (uncorrected["severity"], uncorrected["code"]) == ("critical", None)
    assert "XID 3 (uncorrectable (two-bit) ECC error) on Card0" in uncorrected["message"]
    assert "TWO_BIT_ECC_ERROR" in uncorrected["raw"]


def test_metax_lines_of_one_error_make_one_event_on_the_decoded_bus() -> None:
    [event] = kernel_log_events(lines_of("metax.txt"), {"0001:02:00.0": "gpu-07/maca0"})
    assert (event["severity"], event["device"]) == ("warning", "gpu-07/maca0")
    assert event["message"].startswith("MetaX ATU error at PCI 0001:02:00")
    assert len(event["raw"].splitlines()) == 3


def test_lines_of_no_accelerator_driver_are_ignored() -> None:
    noise = [KernelLine(1.0, "usbhid 2-3:1.0: suspend error -5"), KernelLine(2.0, "NVRM: GPU Board Serial Number: 1")]
    assert kernel_log_events(noise) == []


@pytest.mark.parametrize("spelling", ["00000000:3B:00.0", "0000:3b:00.0", "0000:3b:00", "3b:00.0"])
def test_bus_ids_match_however_the_driver_spells_them(spelling: str) -> None:
    assert pci_key(spelling) == "0000:3b:00"


def test_kmsg_is_read_from_its_end_and_then_line_by_line(settings: AgentSettings, tmp_path: Path) -> None:
    records = (KMSG / "kmsg-records.txt").read_text().splitlines(keepends=True)
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("".join(records[:4]))  # boot messages and an old XID 13: not replayed
    collector = KernelLogCollector(
        settings, kmsg_path=kmsg, dmesg_command=["false"], device_by_bus={"00000000:00:06.0": "gpu-07/cuda0"}
    )
    assert collector.collect(time.time(), CONTEXT).events == []
    fresh = "".join(records[4:])
    with kmsg.open("a") as log:
        log.write(fresh[:40])  # half a record: nothing yet
    assert collector.collect(time.time(), CONTEXT).events == []
    with kmsg.open("a") as log:
        log.write(fresh[40:])
    [event] = collector.collect(time.time(), CONTEXT).events
    assert (event["code"], event["device"], event["severity"]) == (79, "gpu-07/cuda0", "critical")
    assert event["raw"].splitlines()[1] == "NVRM: GPU 0000:00:06.0: GPU has fallen off the bus."
    assert event["time_s"] == pytest.approx(time.time() - time.monotonic() + 1700.0, abs=5)
    collector.close()


def test_kmsg_from_boot_replays_what_is_there(settings: AgentSettings, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text((KMSG / "kmsg-records.txt").read_text())
    collector = KernelLogCollector(settings, kmsg_path=kmsg, dmesg_command=["false"], from_boot=True)
    context = CollectContext(worker_pids={}, device_by_bus={"00000000:00:06.0": "gpu-07/cuda0"})  # as NVML spells it
    events = collector.collect(time.time(), context).events
    assert [(event["code"], event["device"]) for event in events] == [(13, "gpu-07/cuda0"), (79, "gpu-07/cuda0")]
    collector.close()


def test_without_kmsg_dmesg_output_is_diffed(settings: AgentSettings, tmp_path: Path) -> None:
    lines = (KMSG / "nvidia.txt").read_text().splitlines(keepends=True)
    output = tmp_path / "dmesg.txt"
    output.write_text("".join(lines[:7]))
    collector = KernelLogCollector(settings, kmsg_path=tmp_path / "no-kmsg", dmesg_command=["cat", str(output)])
    assert collector.collect(time.time(), CONTEXT).events == []
    assert collector.collect(time.time(), CONTEXT).events == []
    with output.open("a") as log:
        log.write("".join(lines[7:10]))
    assert [event["code"] for event in collector.collect(time.time(), CONTEXT).events] == [31, 94, 63]
    assert collector.collect(time.time(), CONTEXT).events == []


@pytest.mark.parametrize(
    "dmesg",
    [
        ["/nonexistent/dmesg"],
        ["sh", "-c", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1"],
    ],
    ids=["no-dmesg", "not-permitted"],
)
def test_no_readable_kernel_log_means_no_data(settings: AgentSettings, tmp_path: Path, dmesg: list[str]) -> None:
    collector = KernelLogCollector(settings, kmsg_path=tmp_path / "no-kmsg", dmesg_command=dmesg)
    assert collector.devices() == []
    for _ in range(2):
        collected = collector.collect(time.time(), CONTEXT)
        assert (collected.samples, collected.events) == ([], [])

"""NVML events: XIDs and ECC errors heard in a thread, classified, drained by the collector each cycle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.collectors.base import CollectContext
from agents.collectors.nvml import NvmlCollector
from agents.collectors.nvml_events import NvmlEventListener, event_record
from agents.config import AgentSettings
from agents.nvml.provider import EVENT_DOUBLE_BIT_ECC, EVENT_SINGLE_BIT_ECC, EVENT_XID_CRITICAL, NvmlEvent
from agents.nvml.recorded import RecordedNvml, load_recorded_readings

H200 = Path(__file__).parent.parent / "fixtures" / "nvidia-h200"
CONTEXT = CollectContext(worker_pids={})
T0 = 1_795_900_000.0
DEADLINE_S = 10.0  # only bounds a broken test; events arrive within milliseconds


@pytest.fixture
def nvml() -> RecordedNvml:
    return RecordedNvml.from_fixture(H200)


@pytest.fixture
def collector(nvml: RecordedNvml) -> Iterator[NvmlCollector]:
    collector = NvmlCollector(AgentSettings(node_name="gpu-07", cpu_device=False), nvml)
    yield collector
    collector.close()


def events_from(collector: NvmlCollector, count: int) -> list[dict[str, Any]]:
    """Collect until `count` events came (the listener thread hands them over asynchronously)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(events) < count and time.monotonic() < deadline:
        events += collector.collect(T0, CONTEXT).events
        time.sleep(0.01)
    return events


def listener_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "nvml-events"}


def test_injected_xids_come_out_classified_with_their_raw_text(collector: NvmlCollector, nvml: RecordedNvml) -> None:
    assert collector.collect(T0, CONTEXT).events == []
    nvml.inject_event(0, EVENT_XID_CRITICAL, 79)
    nvml.inject_event(0, EVENT_XID_CRITICAL, 13)
    fell_off, app_fault = events_from(collector, 2)
    assert (fell_off["kind"], fell_off["code"], fell_off["severity"]) == ("driver_error", 79, "critical")
    assert fell_off["device"] == "gpu-07/cuda0"
    assert "GPU has fallen off the bus" in fell_off["message"]
    assert "data=79" in fell_off["raw"] and "GPU-0bae265c-555b-5a0c-03c7-8551e62ae474" in fell_off["raw"]
    assert (app_fault["code"], app_fault["severity"]) == (13, "info")
    assert "data=13" in app_fault["raw"]
    assert collector.collect(T0 + 1, CONTEXT).events == []


def test_ecc_events_are_critical_when_uncorrectable(collector: NvmlCollector, nvml: RecordedNvml) -> None:
    collector.collect(T0, CONTEXT)
    nvml.inject_event(0, EVENT_DOUBLE_BIT_ECC)
    nvml.inject_event(0, EVENT_SINGLE_BIT_ECC)
    double, single = events_from(collector, 2)
    assert (double["kind"], double["severity"], double["code"]) == ("ecc_error", "critical", None)
    assert (single["kind"], single["severity"]) == ("ecc_error", "info")


def test_close_stops_the_listener_and_frees_its_event_set(nvml: RecordedNvml) -> None:
    before = listener_threads()
    collector = NvmlCollector(AgentSettings(node_name="gpu-07", cpu_device=False), nvml)
    collector.collect(T0, CONTEXT)
    assert len(listener_threads() - before) == 1
    assert nvml.open_event_sets == 1
    collector.close()
    assert listener_threads() - before == set()
    assert nvml.open_event_sets == 0
    assert not nvml.initialised


def test_a_gpu_that_cannot_report_events_still_reports_readings() -> None:
    readings = load_recorded_readings(H200)
    readings["xid_event_set"] = "ERR NVMLError_NotSupported: Not Supported"
    nvml = RecordedNvml([readings])
    before = listener_threads()
    collector = NvmlCollector(AgentSettings(node_name="gpu-07", cpu_device=False), nvml)
    collected = collector.collect(T0, CONTEXT)
    assert listener_threads() - before == set()
    assert nvml.open_event_sets == 0
    assert {sample["metric"]: sample["value"] for sample in collected.samples}["device.temperature_c"] == 36
    collector.close()


def test_an_event_from_an_unknown_device_keeps_its_uuid_in_the_raw_text() -> None:
    record = event_record(NvmlEvent(uuid=None, event_type=EVENT_XID_CRITICAL, data=48), None, T0)
    assert record["device"] is None
    assert (record["code"], record["severity"]) == (48, "critical")
    assert "uuid=unknown" in record["raw"]


def test_the_listener_hands_over_events_in_order_and_only_once(nvml: RecordedNvml) -> None:
    listener = NvmlEventListener(nvml, [(nvml.handle(0), "GPU-0bae265c-555b-5a0c-03c7-8551e62ae474", "n/cuda0")])
    assert listener.start()
    try:
        for code in (31, 43, 45):
            nvml.inject_event(0, EVENT_XID_CRITICAL, code)
        drained: list[dict[str, Any]] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(drained) < 3 and time.monotonic() < deadline:
            drained += listener.drain()
            time.sleep(0.01)
        assert [event["code"] for event in drained] == [31, 43, 45]
        assert {event["severity"] for event in drained} == {"info"}
        assert listener.drain() == []
    finally:
        listener.stop()

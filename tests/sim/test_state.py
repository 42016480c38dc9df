"""The simulated devices' driver interface: readings published as files and read back by the node agent."""

import logging
from pathlib import Path

import pytest

from soak.plan import DriverErrorFault
from soak.sim.device import DriverEvent, SimReading, SimSpec, SimulatedDevice
from soak.sim.faults import xid_log_line
from soak.sim.profile import SimProfile
from soak.sim.state import MAX_DRIVER_EVENTS, publish_reading, read_readings

START_S = 1_800_000_000.0
GEMM = SimProfile(unit="TFLOP/s", peak_units_per_s=989.0, power_fraction=1.15, memory_fraction=0.05)


def make_reading(time_s: float, *, driver_events: tuple[DriverEvent, ...] = (), sdc_events: int = 0) -> SimReading:
    return SimReading(
        time_s=time_s,
        temperature_c=82.4,
        power_w=699.6,
        power_limit_w=700.0,
        energy_j=125_000.0,
        sm_clock_mhz=1456.0,
        clock_event_reasons=0x4,
        utilization_ratio=1.0,
        memory_used_bytes=8_182_680_780,
        memory_total_bytes=150_754_820_096,
        units_per_s=731.2,
        hung=False,
        driver_events=driver_events,
        sdc_events=sdc_events,
        host_leak_bytes=0,
    )


def xid(time_s: float, code: int = 79) -> DriverEvent:
    return DriverEvent(time_s=time_s, code=code, raw=xid_log_line(pci_bus_id="0000:10:00", code=code))


def test_a_published_device_reading_reads_back_unchanged(tmp_path: Path) -> None:
    fault = DriverErrorFault(kind="driver_errors", device="sim0", xid=79, rate_per_hour=3600)
    device = SimulatedDevice(SimSpec(name="sim0"), faults=[fault], campaign_start_s=START_S, seed=3, start_s=START_S)
    reading = device.advance(START_S + 30.0, GEMM, 1.0)
    assert reading.driver_events

    publish_reading(tmp_path, "sim0", reading)

    assert read_readings(tmp_path, max_age_s=10.0, now_s=START_S + 31.0) == {"sim0": reading}
    assert [path.name for path in tmp_path.iterdir()] == ["sim0.json"]


def test_readings_of_several_devices_are_keyed_by_device_name(tmp_path: Path) -> None:
    publish_reading(tmp_path, "sim0", make_reading(START_S))
    publish_reading(tmp_path, "sim1", make_reading(START_S + 1.0))

    readings = read_readings(tmp_path, max_age_s=10.0, now_s=START_S + 2.0)

    assert sorted(readings) == ["sim0", "sim1"]
    assert readings["sim1"].time_s == START_S + 1.0


def test_the_file_keeps_driver_event_history_and_a_running_sdc_total(tmp_path: Path) -> None:
    publish_reading(tmp_path, "sim0", make_reading(START_S + 1.0, driver_events=(xid(START_S + 0.5),), sdc_events=2))
    publish_reading(tmp_path, "sim0", make_reading(START_S + 2.0))
    publish_reading(
        tmp_path, "sim0", make_reading(START_S + 3.0, driver_events=(xid(START_S + 2.5, 48),), sdc_events=3)
    )

    reading = read_readings(tmp_path, max_age_s=10.0, now_s=START_S + 3.0)["sim0"]

    assert reading.time_s == START_S + 3.0
    assert reading.driver_events == (xid(START_S + 0.5), xid(START_S + 2.5, 48))
    assert reading.sdc_events == 5


def test_only_the_latest_driver_events_are_kept(tmp_path: Path) -> None:
    for batch in range(3):
        events = tuple(xid(START_S + batch * 100 + index) for index in range(100))
        publish_reading(tmp_path, "sim0", make_reading(START_S + 300.0, driver_events=events))

    kept = read_readings(tmp_path, max_age_s=10.0, now_s=START_S + 300.0)["sim0"].driver_events

    assert len(kept) == MAX_DRIVER_EVENTS
    assert kept[-1].time_s == START_S + 299
    assert kept[0].time_s == START_S + 300 - MAX_DRIVER_EVENTS


def test_stale_readings_are_ignored_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An idle simulated device (no worker drives it) is normal: no data, and no warning every second.
    publish_reading(tmp_path, "sim0", make_reading(START_S))
    publish_reading(tmp_path, "sim1", make_reading(START_S + 50.0))

    with caplog.at_level(logging.WARNING, logger="soak.sim.state"):
        assert list(read_readings(tmp_path, max_age_s=30.0, now_s=START_S + 60.0)) == ["sim1"]
    assert caplog.text == ""
    with caplog.at_level(logging.DEBUG, logger="soak.sim.state"):
        readings = read_readings(tmp_path, max_age_s=30.0, now_s=START_S + 60.0)

    assert list(readings) == ["sim1"]
    assert "sim0.json" in caplog.text
    assert "60.0 s old" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        '{"time_s": 1800000000.0, "temperature_c": 8',  # cut off mid-write
        '{"time_s": "soon"}',  # not a reading
        "",
    ],
)
def test_corrupt_files_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    publish_reading(tmp_path, "sim0", make_reading(START_S))
    (tmp_path / "sim1.json").write_text(content)

    with caplog.at_level(logging.WARNING, logger="soak.sim.state"):
        readings = read_readings(tmp_path, max_age_s=30.0, now_s=START_S)

    assert list(readings) == ["sim0"]
    assert "sim1.json" in caplog.text


def test_publishing_over_a_corrupt_file_starts_a_fresh_history(tmp_path: Path) -> None:
    (tmp_path / "sim0.json").write_text("{")

    publish_reading(tmp_path, "sim0", make_reading(START_S, sdc_events=1))

    assert read_readings(tmp_path, max_age_s=30.0, now_s=START_S)["sim0"].sdc_events == 1


def test_a_missing_directory_has_no_readings(tmp_path: Path) -> None:
    assert read_readings(tmp_path / "absent", max_age_s=30.0, now_s=START_S) == {}


def test_device_names_that_would_leave_the_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        publish_reading(tmp_path, "../sim0", make_reading(START_S))

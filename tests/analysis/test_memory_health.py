"""Memory and PCIe health detector on crafted counters, gauges and events."""

import numpy as np
import numpy.typing as npt
import pydantic
import pytest

from soak.analysis.memory_health import MemoryHealthLimits, detect_memory_health
from soak.analysis.series import Detection, Series
from soak.analysis.telemetry import DeviceTelemetry, EventRecord
from tests.analysis.builders import h200

START_S = 1_764_000_000.0
INTERVAL_S = 10.0
HOUR_S = 3600.0
DAY_S = 86400.0
TIME_S = START_S + np.arange(0.0, 2 * DAY_S, INTERVAL_S)
Values = npt.NDArray[np.float64]


def constant(value: float) -> Values:
    return np.full(TIME_S.size, value)


def step(before: float, after: float, at_s: float) -> Values:
    return np.where(np.less(TIME_S, at_s), before, after)


def healthy() -> dict[str, Values]:
    """Counters flat, link at Gen5 x16 while busy and down to Gen1 whenever the device idles (every other hour)."""
    busy = (((TIME_S - START_S) // HOUR_S) % 2 == 0).astype(float)
    return {
        "device.ecc_uncorrected_volatile_errors": constant(0.0),
        "device.ecc_uncorrected_aggregate_errors": constant(2.0),
        "device.ecc_corrected_volatile_errors": constant(7.0),
        "device.remapped_rows_uncorrectable": constant(3.0),
        "device.remapped_rows_pending": constant(0.0),
        "device.remapped_rows_failure": constant(0.0),
        "device.retired_pages_double_bit": constant(1.0),
        "device.retired_pages_single_bit": constant(4.0),
        "device.pcie_replays": constant(12.0),
        "device.utilization_ratio": 0.97 * busy,
        "device.pcie_link_gen": np.where(busy > 0, 5.0, 1.0),
        "device.pcie_link_gen_max": constant(5.0),
        "device.pcie_link_width": constant(16.0),
        "device.pcie_link_width_max": constant(16.0),
    }


def telemetry(series: dict[str, Values], events: tuple[EventRecord, ...] = ()) -> DeviceTelemetry:
    return h200(
        start_s=START_S,
        warmup_end_s=START_S + 1800.0,
        end_s=float(TIME_S[-1]),
        sample_interval_s=INTERVAL_S,
        series={name: Series(TIME_S, values) for name, values in series.items()},
        events=events,
    )


def detect(series: dict[str, Values], events: tuple[EventRecord, ...] = (), **limits: float) -> dict[str, Detection]:
    found = detect_memory_health(telemetry(series, events), MemoryHealthLimits.model_validate(limits))
    return {detection.subject: detection for detection in found}


def test_a_healthy_device_whose_link_downshifts_only_while_idle_is_silent() -> None:
    assert detect(healthy()) == {}


def test_counter_resets_and_misreadings_are_not_errors() -> None:
    # A driver reload zeroes the volatile counters: 1000 replays to 0 must not read as 1000 replays in a minute
    # (or as negative ones), and the correctable count starting again from 0 is no burst of errors. A lifetime
    # counter read once as 0 is a misreading: its return to 2 is not two new uncorrectable errors.
    reload_s = START_S + DAY_S
    lifetime = constant(2.0)
    lifetime[4000] = 0.0
    series = healthy() | {
        "device.pcie_replays": step(1_000.0, 0.0, reload_s),
        "device.ecc_corrected_volatile_errors": step(7.0, 0.0, reload_s),
        "device.ecc_uncorrected_aggregate_errors": lifetime,
    }

    assert detect(series) == {}


def test_any_new_uncorrectable_ecc_error_is_critical_at_the_sample_that_shows_it() -> None:
    error_s = float(TIME_S[5000])
    series = healthy() | {"device.ecc_uncorrected_volatile_errors": step(0.0, 1.0, error_s)}

    detection = detect(series)["ecc_uncorrectable"]

    assert (detection.kind, detection.severity) == ("memory_health", "critical")
    assert detection.onset_s == detection.detected_s == error_s
    assert "Uncorrectable (double-bit) ECC errors" in detection.explanation
    assert "volatile counter: 1" in detection.explanation


def test_a_double_bit_ecc_event_alone_is_critical() -> None:
    event = EventRecord("gpu-0", START_S + HOUR_S, "ecc_error", "critical", message="double-bit ECC error")

    detection = detect(healthy(), (event,))["ecc_uncorrectable"]

    assert detection.detected_s == START_S + HOUR_S
    assert "double-bit ECC events: 1" in detection.explanation


def test_a_rising_correctable_rate_warns_once_a_day_holds_more_than_the_limit() -> None:
    # 10 correctable errors an hour from 06:00 on: the 101st within 24 h arrives after 10 h 6 min.
    rise_s = START_S + 6 * HOUR_S
    hours = np.maximum(TIME_S - rise_s, 0.0) / HOUR_S
    series = healthy() | {"device.ecc_corrected_volatile_errors": 7.0 + np.floor(10.0 * hours)}

    detection = detect(series)["ecc_correctable_rate"]

    assert (detection.kind, detection.severity) == ("memory_health", "warning")
    assert abs(detection.onset_s - (rise_s + 360.0)) <= INTERVAL_S
    assert abs(detection.detected_s - (rise_s + 10.1 * HOUR_S)) <= INTERVAL_S
    assert "Correctable (single-bit) ECC errors reached 101 in 24 h" in detection.explanation
    assert "limit 100 per day" in detection.explanation


@pytest.mark.parametrize(
    ("metric", "value", "subject", "severity"),
    [
        ("device.remapped_rows_failure", 1.0, "row_remap_failure", "critical"),
        ("device.remapped_rows_pending", 1.0, "row_remap_pending", "warning"),
        ("device.remapped_rows_uncorrectable", 512.0, "remapped_rows_uncorrectable", "critical"),
        ("device.retired_pages_double_bit", 2.0, "retired_pages_double_bit", "critical"),
        ("device.retired_pages_pending", 1.0, "retired_pages_pending", "warning"),
        ("device.retired_pages_single_bit", 62.0, "retired_pages", "critical"),
    ],
)
def test_dcgm_memory_limits(metric: str, value: float, subject: str, severity: str) -> None:
    at_s = float(TIME_S[3000])
    series = healthy() | {metric: step(healthy().get(metric, constant(0.0))[0], value, at_s)}

    found = detect(series)

    assert list(found) == [subject]
    assert (found[subject].severity, found[subject].detected_s) == (severity, at_s)


def test_remapped_rows_below_the_dcgm_limit_and_old_retired_pages_are_history() -> None:
    series = healthy() | {
        "device.remapped_rows_uncorrectable": step(3.0, 511.0, START_S + DAY_S),
        "device.retired_pages_double_bit": constant(9.0),
    }

    assert detect(series) == {}


def test_a_pcie_replay_rate_above_the_bit_error_limit_warns() -> None:
    # 60 replays a minute for ten minutes on a Gen5 x16 link, whose limit at 1e-12 is 30.7 a minute.
    burst_s = START_S + 5 * HOUR_S
    minutes = np.clip(TIME_S - burst_s, 0.0, 600.0) / 60.0
    series = healthy() | {"device.pcie_replays": 12.0 + np.floor(60.0 * minutes)}

    detection = detect(series)["replay_rate"]

    assert (detection.kind, detection.severity) == ("pcie_health", "warning")
    assert burst_s < detection.detected_s <= burst_s + 70.0
    assert "above the 30.7 per minute that a bit-error rate of 1e-12 allows on a Gen5 x16 link" in (
        detection.explanation
    )


def test_a_link_below_its_maximum_while_busy_warns_after_several_samples() -> None:
    series = healthy()
    busy = series["device.utilization_ratio"] > 0
    first_busy_degraded = int(np.flatnonzero(busy & (TIME_S >= START_S + 2 * HOUR_S))[0])
    series["device.pcie_link_width"] = np.where(busy & (TIME_S >= START_S + 2 * HOUR_S), 8.0, 16.0)

    detection = detect(series)["link"]

    assert (detection.kind, detection.severity) == ("pcie_health", "warning")
    assert detection.onset_s == TIME_S[first_busy_degraded]
    assert detection.detected_s == TIME_S[first_busy_degraded + 5]
    assert "at Gen5 x8 instead of Gen5 x16" in detection.explanation


def test_a_brief_slow_link_while_busy_is_not_a_fault() -> None:
    series = healthy()
    series["device.pcie_link_gen"] = np.where(np.isin(np.arange(TIME_S.size), [100, 101, 102]), 4.0, 5.0)

    assert detect(series) == {}


def test_a_degraded_link_event_counts_only_when_it_lasts() -> None:
    degraded_s = START_S + 3 * HOUR_S
    degraded = EventRecord("gpu-0", degraded_s, "pcie_link_degraded", "warning")
    restored_soon = EventRecord("gpu-0", degraded_s + 20.0, "pcie_link_restored", "info")

    assert detect(healthy(), (degraded, restored_soon)) == {}
    detection = detect(healthy(), (degraded,))["link"]
    assert detection.onset_s == degraded_s
    assert detection.detected_s == degraded_s + 6 * INTERVAL_S
    assert "1 lasting pcie_link_degraded event(s)" in detection.explanation


@pytest.mark.parametrize(
    ("field", "value"),
    [("pcie_busy_utilization_ratio", 1.5), ("pcie_min_degraded_samples", 0), ("retired_pages_limit", 0)],
)
def test_bad_limits_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        MemoryHealthLimits.model_validate({field: value})

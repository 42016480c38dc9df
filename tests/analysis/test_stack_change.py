"""Software-stack changes: a note per change, and a regression named by both versions when the device does worse."""

import json

import numpy as np
import numpy.typing as npt
import pydantic
import pytest
from scipy import signal

from soak.analysis.series import Detection, Series
from soak.analysis.stack_change import StackChangeLimits, detect_stack_changes
from soak.analysis.telemetry import DeviceTelemetry, EventRecord
from tests.analysis.builders import h200

START_S = 1_764_000_000.0
INTERVAL_S = 10.0
HOUR_S = 3600.0
DAY_S = 86400.0
TIME_S = START_S + np.arange(0.0, 4 * DAY_S, INTERVAL_S)
CHANGE_S = START_S + 2 * DAY_S + 7 * HOUR_S


def driver_change(time_s: float = CHANGE_S, old: str = "550.54.15", new: str = "560.28.03") -> EventRecord:
    raw = json.dumps({"component": "driver", "old": old, "new": new})
    return EventRecord("gpu-0", time_s, "stack_change", "info", raw=raw)


def throughput(seed: int, *, drop_fraction: float = 0.0) -> npt.NDArray[np.float64]:
    """Work per second with a 2 % diurnal cycle and AR(1) noise, lower by drop_fraction after the change."""
    rng = np.random.default_rng(seed)
    phi, sd = 0.95, 0.01
    noise = signal.lfilter([1.0], [1.0, -phi], rng.normal(0.0, sd * np.sqrt(1 - phi**2), TIME_S.size))
    diurnal = 0.02 * np.sin(2 * np.pi * (TIME_S - START_S) / DAY_S)
    level = np.where(TIME_S >= CHANGE_S, 1.0 - drop_fraction, 1.0)
    values: npt.NDArray[np.float64] = 1000.0 * level * (1.0 + diurnal + noise)
    return values


def detect(
    events: list[EventRecord], series: dict[str, npt.NDArray[np.float64]] | None = None
) -> dict[str, list[Detection]]:
    telemetry = h200(
        start_s=START_S,
        warmup_end_s=START_S + 1800.0,
        end_s=float(TIME_S[-1]),
        sample_interval_s=INTERVAL_S,
        series={name: Series(TIME_S, values) for name, values in (series or {}).items()},
        events=events,
    )
    found: dict[str, list[Detection]] = {}
    for detection in detect_stack_changes(telemetry, StackChangeLimits()):
        found.setdefault(detection.kind, []).append(detection)
    return found


def test_a_version_change_is_noted_for_the_report() -> None:
    found = detect([driver_change()])

    (note,) = found.pop("stack_change")
    assert found == {}
    assert (note.subject, note.severity, note.detected_s) == ("driver", "info", CHANGE_S)
    assert "Driver changed mid-campaign: 550.54.15 → 560.28.03" in note.explanation


@pytest.mark.parametrize("seed", range(5))
def test_a_change_that_costs_nothing_is_only_noted(seed: int) -> None:
    found = detect([driver_change()], {"throughput.train": throughput(seed)})

    assert list(found) == ["stack_change"]


def test_a_throughput_regression_names_both_versions_and_is_caught_within_the_hour() -> None:
    found = detect([driver_change()], {"throughput.train": throughput(7, drop_fraction=0.06)})

    (regression,) = found["stack_regression"]
    assert (regression.severity, regression.subject) == ("warning", "driver 550.54.15->560.28.03")
    assert regression.onset_s == CHANGE_S
    assert CHANGE_S < regression.detected_s <= CHANGE_S + HOUR_S
    assert 5.0 < -regression.evidence["train_change_percent"] < 7.0
    assert regression.explanation.startswith("Throughput of train fell ")
    assert "after driver 550.54.15 → 560.28.03 on" in regression.explanation


def worker_started(time_s: float, torch: str) -> EventRecord:
    raw = json.dumps({"stack": "CUDA 12.8", "torch": torch})
    return EventRecord("gpu-0", time_s, "software_stack", "info", raw=raw)


def test_a_framework_that_changed_between_two_workers_is_a_change_like_a_driver() -> None:
    events = [worker_started(START_S, "2.13.0"), worker_started(START_S + DAY_S, "2.13.0")]
    events.append(worker_started(CHANGE_S, "2.14.1"))

    found = detect(events, {"throughput.train": throughput(7, drop_fraction=0.06)})

    (note,) = found["stack_change"]
    assert (note.subject, note.detected_s) == ("torch", CHANGE_S)
    (regression,) = found["stack_regression"]
    assert regression.subject == "torch 2.13.0->2.14.1"
    assert "after torch 2.13.0 → 2.14.1 on" in regression.explanation


def test_a_regression_is_judged_on_steady_windows_only() -> None:
    # Outside its steady windows the workload warms up at half speed; that must not read as a regression.
    values = throughput(3)
    warming = ((TIME_S - START_S) % (6 * HOUR_S)) < 600.0
    values[warming] *= 0.5
    windows = [(start + 600.0, start + 6 * HOUR_S) for start in np.arange(START_S, TIME_S[-1], 6 * HOUR_S)]
    telemetry = DeviceTelemetry(
        device="gpu-0",
        node="node-a",
        vendor="nvidia",
        model="H200",
        memory_total_bytes=None,
        start_s=START_S,
        warmup_end_s=START_S + 1800.0,
        end_s=float(TIME_S[-1]),
        sample_interval_s=INTERVAL_S,
        series={"throughput.train": Series(TIME_S, values)},
        events=[driver_change(START_S + 2 * DAY_S + 60.0)],
        steady_windows={"train": windows},
    )

    assert [d.kind for d in detect_stack_changes(telemetry, StackChangeLimits())] == ["stack_change"]


def test_more_driver_errors_after_a_change_are_a_regression() -> None:
    errors = [EventRecord("gpu-0", CHANGE_S + k * HOUR_S, "driver_error", "warning", code=92) for k in range(1, 13)]

    (regression,) = detect([driver_change(), *errors])["stack_regression"]

    assert regression.evidence["driver_errors_before"] == 0
    # Three errors in the three hours after the change, none in the 54 hours before: clear at the third.
    assert regression.detected_s == errors[2].time_s
    assert "Driver errors rose from 0 to" in regression.explanation


def test_a_change_event_without_its_fields_is_skipped() -> None:
    broken = EventRecord("gpu-0", CHANGE_S, "stack_change", "info", raw="driver upgraded")

    assert detect([broken], {"throughput.train": throughput(1, drop_fraction=0.1)}) == {}


@pytest.mark.parametrize(("field", "value"), [("max_regression_fraction", 3.0), ("min_blocks_each_side", 1)])
def test_bad_limits_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        StackChangeLimits.model_validate({field: value})

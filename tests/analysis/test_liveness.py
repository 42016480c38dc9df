"""Liveness detector: hung workers, crash loops and lost nodes from heartbeats, telemetry gaps and events."""

import numpy as np
import numpy.typing as npt
import pydantic
import pytest

from soak.analysis.liveness import LivenessLimits, detect_liveness
from soak.analysis.series import Detection, Series
from soak.analysis.telemetry import DeviceTelemetry, EventRecord
from tests.analysis.builders import h200

START_S = 1_764_000_000.0
INTERVAL_S = 10.0
HOUR_S = 3600.0
DAY_S = 86400.0
WARMUP_END_S = START_S + 1800.0
TIME_S = START_S + np.arange(0.0, DAY_S, INTERVAL_S)
Times = npt.NDArray[np.float64]


def without(times_s: Times, start_s: float, end_s: float) -> Times:
    return times_s[(times_s <= start_s) | (times_s >= end_s)]


def telemetry(
    heartbeat_s: Times = TIME_S,
    agent_s: Times = TIME_S,
    events: tuple[EventRecord, ...] = (),
    runs: tuple[tuple[float, float], ...] = (),
) -> DeviceTelemetry:
    return h200(
        start_s=START_S,
        warmup_end_s=WARMUP_END_S,
        end_s=float(TIME_S[-1]),
        sample_interval_s=INTERVAL_S,
        series={
            "worker.busy_ratio": Series(heartbeat_s, np.full(heartbeat_s.size, 0.98)),
            "throughput.train": Series(heartbeat_s, np.full(heartbeat_s.size, 1000.0)),
            "device.power_w": Series(agent_s, np.full(agent_s.size, 690.0)),
            "device.temperature_c": Series(agent_s, np.full(agent_s.size, 70.0)),
        },
        events=events,
        steady_windows={"train": runs} if runs else {},
    )


def event(time_s: float, kind: str) -> EventRecord:
    return EventRecord("gpu-0", time_s, kind, "warning", message=f"{kind} at {time_s:.0f}")


def detect(device: DeviceTelemetry, **limits: float) -> dict[str, Detection]:
    return {d.kind: d for d in detect_liveness(device, LivenessLimits.model_validate(limits))}


def test_a_worker_that_keeps_its_heartbeat_on_a_live_node_is_silent() -> None:
    assert detect(telemetry()) == {}


def test_a_heartbeat_that_stops_while_the_device_still_reports_is_a_hang() -> None:
    last_beat_s = START_S + 5 * HOUR_S
    heartbeat_s = without(TIME_S, last_beat_s, last_beat_s + 600.0)

    found = detect(telemetry(heartbeat_s))

    hang = found.pop("worker_hang")
    assert found == {}
    assert (hang.severity, hang.subject) == ("warning", "worker")
    assert hang.onset_s == last_beat_s
    # Thirty heartbeat intervals of silence, seen at the agent's next sample.
    assert hang.detected_s == last_beat_s + 30 * INTERVAL_S
    assert hang.last_seen_s == last_beat_s + 600.0
    assert "heartbeat stopped once while the device kept reporting, longest 10 min" in hang.explanation
    assert "limit 30 heartbeat intervals = 5 min" in hang.explanation


def test_a_silence_between_two_workload_runs_is_no_hang_but_one_inside_a_run_is() -> None:
    switch_s = START_S + 5 * HOUR_S
    heartbeat_s = without(TIME_S, switch_s, switch_s + 900.0)
    runs = ((WARMUP_END_S, switch_s), (switch_s + 900.0, float(TIME_S[-1])))

    assert detect(telemetry(heartbeat_s, runs=runs)) == {}
    one_long_run = ((WARMUP_END_S, float(TIME_S[-1])),)
    assert set(detect(telemetry(heartbeat_s, runs=one_long_run))) == {"worker_hang"}


def test_a_worker_that_reports_less_often_than_the_agent_samples_is_not_hung() -> None:
    minutely_s = TIME_S[::6]

    assert detect(telemetry(minutely_s)) == {}


def test_a_worker_that_died_and_was_restarted_is_not_hung() -> None:
    died_s = START_S + 5 * HOUR_S + 5.0
    heartbeat_s = without(TIME_S, died_s - 5.0, died_s + 150.0)

    assert detect(telemetry(heartbeat_s, events=(event(died_s, "worker_died"),))) == {}


def test_silence_before_warm_up_ends_is_start_up() -> None:
    heartbeat_s = TIME_S[TIME_S >= WARMUP_END_S - 30.0]
    agent_s = TIME_S[TIME_S >= WARMUP_END_S - 300.0]

    assert detect(telemetry(heartbeat_s, agent_s)) == {}


def test_a_runner_hang_event_is_a_hang() -> None:
    hang_s = START_S + 3 * HOUR_S

    hang = detect(telemetry(events=(event(hang_s, "worker_hang"),)))["worker_hang"]

    assert hang.detected_s == hang_s
    assert "the runner found it hung once and restarted it" in hang.explanation


def test_restarts_above_the_hourly_limit_are_a_critical_crash_loop() -> None:
    restarts_s = [START_S + 2 * HOUR_S + k * 600.0 for k in range(5)]

    found = detect(telemetry(events=tuple(event(t, "worker_died") for t in restarts_s)))

    loop = found["crash_loop"]
    assert (loop.severity, loop.subject) == ("critical", "worker")
    assert (loop.onset_s, loop.detected_s, loop.last_seen_s) == (restarts_s[0], restarts_s[3], restarts_s[4])
    assert "up to 5 restarts within an hour" in loop.explanation and "limit 3 per hour" in loop.explanation


def test_occasional_restarts_are_no_crash_loop() -> None:
    restarts = tuple(event(START_S + k * 4 * HOUR_S, "worker_died") for k in range(6))

    assert "crash_loop" not in detect(telemetry(events=restarts))


def test_the_runner_giving_up_is_a_crash_loop_at_once() -> None:
    gave_up_s = START_S + 6 * HOUR_S

    loop = detect(telemetry(events=(event(gave_up_s, "worker_crash_loop"),)))["crash_loop"]

    assert loop.detected_s == gave_up_s
    assert "the runner stopped restarting it" in loop.explanation


def test_a_node_that_goes_silent_and_returns_is_lost_for_that_while_without_a_hang() -> None:
    quiet_from_s = START_S + 8 * HOUR_S
    times_s = without(TIME_S, quiet_from_s, quiet_from_s + 900.0)

    found = detect(telemetry(times_s, times_s))

    lost = found.pop("node_lost")
    assert found == {}
    assert (lost.severity, lost.subject) == ("warning", "node-a")
    assert (lost.onset_s, lost.detected_s, lost.last_seen_s) == (
        quiet_from_s,
        quiet_from_s + 120.0,
        quiet_from_s + 900.0,
    )
    assert lost.evidence["came_back"] == "yes"
    assert "longest 15 min" in lost.explanation and "it came back at" in lost.explanation


def test_a_node_that_never_returns_is_reported_as_still_gone() -> None:
    quiet_from_s = START_S + 20 * HOUR_S
    times_s = TIME_S[: np.searchsorted(TIME_S, quiet_from_s, side="right")]

    lost = detect(telemetry(times_s, times_s))["node_lost"]

    assert lost.detected_s == quiet_from_s + 120.0
    assert lost.evidence["came_back"] == "no"
    assert "it has not come back" in lost.explanation


def test_a_node_lost_event_and_the_silence_it_caused_are_one_outage() -> None:
    quiet_from_s = START_S + 8 * HOUR_S
    times_s = without(TIME_S, quiet_from_s, quiet_from_s + 900.0)
    events = (event(quiet_from_s + 60.0, "node_lost"), event(quiet_from_s + 900.0, "node_returned"))

    lost = detect(telemetry(times_s, times_s, events))["node_lost"]

    assert lost.detected_s == quiet_from_s + 60.0
    assert lost.evidence["outages"] == 1


def test_a_node_whose_ray_worker_joined_late_is_out_of_the_campaign_until_it_joined() -> None:
    # Its agent reported all along; its workers waited for its Ray node, which joined two hours in.
    joined_s = WARMUP_END_S + 2 * HOUR_S
    heartbeat_s = TIME_S[np.searchsorted(TIME_S, joined_s) :]
    events = (event(START_S + 5.0, "node_waiting"), event(joined_s, "node_joined"))

    lost = detect(telemetry(heartbeat_s, TIME_S, events))["node_lost"]

    assert (lost.onset_s, lost.last_seen_s) == (START_S + 5.0, joined_s)
    assert lost.evidence["came_back"] == "yes" and lost.evidence["node_waiting_events"] == 1
    assert "out of the Ray cluster once" in lost.explanation


def test_a_node_that_never_joined_is_still_out_at_the_end() -> None:
    lost = detect(telemetry(TIME_S[:0], TIME_S, (event(START_S + 5.0, "node_waiting"),)))["node_lost"]

    assert lost.evidence["came_back"] == "no"
    assert "it has not come back" in lost.explanation


def test_a_gap_in_which_the_agent_reported_dropping_telemetry_is_no_lost_node() -> None:
    quiet_from_s = START_S + 8 * HOUR_S
    times_s = without(TIME_S, quiet_from_s, quiet_from_s + 900.0)

    assert detect(telemetry(times_s, times_s, (event(quiet_from_s + 300.0, "telemetry_dropped"),))) == {}


@pytest.mark.parametrize(("field", "value"), [("hang_intervals", 1), ("node_lost_after_s", 0.0)])
def test_bad_limits_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        LivenessLimits.model_validate({field: value})

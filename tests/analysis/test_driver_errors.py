"""Driver-error detector: FAIL-class codes at once, WARN-class codes by rate or burst, application codes never."""

import pydantic
import pytest

from soak.analysis.driver_errors import DriverErrorLimits, detect_driver_errors
from soak.analysis.telemetry import DeviceTelemetry, EventRecord

START_S = 1_764_000_000.0
HOUR_S = 3600.0
DAY_S = 86400.0


def xid(time_s: float, code: int, severity: str) -> EventRecord:
    return EventRecord("gpu-0", time_s, "driver_error", severity, code=code, message=f"XID {code}")


def telemetry(events: list[EventRecord], *, vendor: str = "nvidia", days: float = 28.0) -> DeviceTelemetry:
    return DeviceTelemetry(
        device="gpu-0",
        node="node-a",
        vendor=vendor,
        model="H200",
        memory_total_bytes=141e9,
        start_s=START_S,
        warmup_end_s=START_S + 1800.0,
        end_s=START_S + days * DAY_S,
        sample_interval_s=10.0,
        series={},
        events=events,
    )


def test_a_fail_class_code_is_critical_at_the_event_itself() -> None:
    fallen_off_s = START_S + 5 * DAY_S + 123.0

    (detection,) = detect_driver_errors(telemetry([xid(fallen_off_s, 79, "critical")]), DriverErrorLimits())

    assert (detection.kind, detection.subject, detection.severity) == ("driver_error", "xid.79", "critical")
    assert detection.onset_s == detection.detected_s == fallen_off_s
    assert "XID 79 (GPU has fallen off the bus) seen once at" in detection.explanation
    assert "reboot" in detection.explanation


def test_a_benign_warn_code_once_a_week_and_application_codes_raise_nothing() -> None:
    weekly = [xid(START_S + week * 7 * DAY_S + 600.0, 63, "warning") for week in range(4)]
    application = [xid(START_S + hour * HOUR_S, 13, "info") for hour in range(200)]

    assert detect_driver_errors(telemetry(weekly + application), DriverErrorLimits()) == []


def test_a_warn_code_above_its_daily_rate_is_a_warning_from_the_error_that_crossed_it() -> None:
    # Five XID 92 five hours apart: not a burst, but the fourth within 24 h exceeds 3 per day.
    times_s = [START_S + 2 * DAY_S + k * 5 * HOUR_S for k in range(5)]

    (detection,) = detect_driver_errors(telemetry([xid(t, 92, "warning") for t in times_s]), DriverErrorLimits())

    assert (detection.subject, detection.severity) == ("xid.92", "warning")
    assert (detection.onset_s, detection.detected_s, detection.last_seen_s) == (times_s[0], times_s[3], times_s[4])
    assert detection.evidence["rule"] == "rate"
    assert "4 within 24 h (limit 3 per day)" in detection.explanation
    assert "high single-bit ECC error rate" in detection.explanation
    assert "5 times in all" in detection.explanation


def test_a_burst_of_a_warn_code_is_a_warning_at_once() -> None:
    times_s = [START_S + DAY_S, START_S + DAY_S + 60.0, START_S + DAY_S + 200.0]

    (detection,) = detect_driver_errors(telemetry([xid(t, 94, "warning") for t in times_s]), DriverErrorLimits())

    assert detection.evidence["rule"] == "burst"
    assert (detection.onset_s, detection.detected_s) == (times_s[0], times_s[2])
    assert "a burst of 3 within 10 min" in detection.explanation


def test_a_fail_class_tolerance_flags_each_code_once_the_device_exceeds_it() -> None:
    events = [
        xid(START_S + HOUR_S, 48, "critical"),
        xid(START_S + 2 * HOUR_S, 48, "critical"),
        xid(START_S + 3 * HOUR_S, 119, "critical"),
        xid(START_S + 4 * HOUR_S, 48, "critical"),
    ]

    detections = {d.subject: d for d in detect_driver_errors(telemetry(events), DriverErrorLimits(max_fail=2))}

    assert set(detections) == {"xid.48", "xid.119"}
    # The third FAIL-class error (XID 119) exceeded the tolerance of two: both codes are flagged from then.
    assert detections["xid.48"].onset_s == START_S + HOUR_S
    assert detections["xid.48"].detected_s == detections["xid.119"].detected_s == START_S + 3 * HOUR_S
    assert detections["xid.48"].evidence["count"] == 3


def test_codes_of_other_vendors_are_named_as_their_vendor_codes() -> None:
    event = EventRecord("npu-0", START_S + HOUR_S, "driver_error", "critical", code=0x80E01801)

    (detection,) = detect_driver_errors(telemetry([event], vendor="huawei"), DriverErrorLimits())

    assert detection.subject == f"code.{0x80E01801}"
    assert "huawei error code" in detection.explanation and "XID" not in detection.explanation


@pytest.mark.parametrize(
    ("field", "value"), [("burst_count", 1), ("max_warn_per_day", -1), ("burst_window_s", 0.0), ("warn", 10)]
)
def test_bad_limits_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        DriverErrorLimits.model_validate({field: value})

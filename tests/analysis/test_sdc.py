"""Silent-data-corruption detector on crafted event streams."""

import pydantic
import pytest

from soak.analysis.sdc import SdcLimits, detect_sdc
from soak.analysis.telemetry import DeviceTelemetry, EventRecord
from tests.analysis.builders import h200

START_S = 1_764_000_000.0
DAY_S = 86400.0


def telemetry(*event_times_s: float) -> DeviceTelemetry:
    events = [
        EventRecord("gpu-0", time_s, "sdc", "critical", message=f"gemm produced 1 wrong result at {time_s:.0f}")
        for time_s in event_times_s
    ]
    return h200(
        start_s=START_S,
        warmup_end_s=START_S + 1800.0,
        end_s=START_S + 7 * DAY_S,
        sample_interval_s=10.0,
        events=events,
    )


def test_a_device_without_wrong_results_is_silent() -> None:
    assert detect_sdc(telemetry(), SdcLimits()) == []


def test_the_first_wrong_result_is_critical_at_once_and_says_what_to_do() -> None:
    (detection,) = detect_sdc(telemetry(START_S + 3 * DAY_S), SdcLimits())

    assert (detection.kind, detection.severity, detection.device) == ("silent_data_corruption", "critical", "gpu-0")
    assert detection.detected_s == detection.onset_s == START_S + 3 * DAY_S
    assert "1 wrong result without any error" in detection.explanation
    assert "do not trust this device's output until it passes a diagnostic" in detection.explanation


def test_a_tolerance_flags_the_first_wrong_result_beyond_it() -> None:
    times_s = (START_S + 1000.0, START_S + 2000.0, START_S + 3000.0, START_S + 4000.0)

    (detection,) = detect_sdc(telemetry(*times_s), SdcLimits(max_events=2))

    assert (detection.onset_s, detection.detected_s, detection.last_seen_s) == (times_s[0], times_s[2], times_s[3])
    assert detection.evidence["count"] == 4
    assert "4 wrong results" in detection.explanation and "(limit 2)" in detection.explanation
    assert "wrong result at 1764004000" in detection.explanation  # the latest event's own words


def test_a_negative_tolerance_is_refused_by_name() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_events"):
        SdcLimits(max_events=-1)

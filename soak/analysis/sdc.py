"""Silent-data-corruption detector: wrong results that no error announced."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from soak.analysis.series import Detection, format_utc
from soak.analysis.telemetry import DeviceTelemetry

# The sentence quotes the latest event's own words, cut to a length a report line can hold.
MESSAGE_CHARS = 160


class SdcLimits(BaseModel):
    """How many silent wrong results a device may produce; any is too many by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_events: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="wrong-result (sdc) events tolerated before a critical finding; 0 flags the first",
    )


def detect_sdc(telemetry: DeviceTelemetry, limits: SdcLimits) -> list[Detection]:
    """A critical finding once the device's wrong results exceed max_events, flagged at the first one beyond it."""
    events = sorted(
        (event for event in telemetry.events if event.kind == "sdc" and event.time_s <= telemetry.end_s),
        key=lambda event: event.time_s,
    )
    if len(events) <= limits.max_events:
        return []
    first, beyond, last = events[0], events[limits.max_events], events[-1]
    count = len(events)
    results = "wrong result" if count == 1 else "wrong results"
    explanation = (
        f"{count} {results} without any error since {format_utc(first.time_s)} (limit {limits.max_events}), "
        f"latest: {last.message[:MESSAGE_CHARS] or 'no detail'}; do not trust this device's output until it "
        "passes a diagnostic."
    )
    return [
        Detection(
            device=telemetry.device,
            kind="silent_data_corruption",
            subject="results",
            severity="critical",
            onset_s=first.time_s,
            detected_s=beyond.time_s,
            last_seen_s=last.time_s,
            explanation=explanation,
            evidence={
                "count": count,
                "max_events": limits.max_events,
                "first_s": first.time_s,
                "last_s": last.time_s,
                "latest_message": last.message,
            },
        )
    ]

"""Telemetry of one test device: an H200 named gpu-0 on node-a, unless a test says otherwise."""

from typing import Any

from soak.analysis.telemetry import DeviceTelemetry

H200_MEMORY_BYTES = 141e9


def h200(**fields: Any) -> DeviceTelemetry:
    """DeviceTelemetry of gpu-0 on node-a; the test gives the times, series and events, and may override any field."""
    identity: dict[str, Any] = {
        "device": "gpu-0",
        "node": "node-a",
        "vendor": "nvidia",
        "model": "H200",
        "memory_total_bytes": H200_MEMORY_BYTES,
        "series": {},
    }
    return DeviceTelemetry(**{**identity, **fields})

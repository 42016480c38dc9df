"""Every detector, run in one place: per device, then across identical peers."""

from __future__ import annotations

from collections.abc import Sequence

from soak.analysis.drift import detect_drift
from soak.analysis.driver_errors import detect_driver_errors
from soak.analysis.leak import detect_leaks
from soak.analysis.liveness import detect_liveness
from soak.analysis.memory_health import detect_memory_health
from soak.analysis.peers import detect_slow_peers
from soak.analysis.sdc import detect_sdc
from soak.analysis.series import Detection
from soak.analysis.stack_change import detect_stack_changes
from soak.analysis.telemetry import DeviceTelemetry
from soak.analysis.thermal import detect_thermal
from soak.plan import Acceptance


def detect_device(telemetry: DeviceTelemetry, acceptance: Acceptance) -> list[Detection]:
    """What every per-device detector finds in one device's telemetry."""
    return [
        *detect_leaks(telemetry, acceptance.leak),
        *detect_thermal(telemetry, acceptance.thermal),
        *detect_drift(telemetry, acceptance.throughput),
        *detect_driver_errors(telemetry, acceptance.driver_errors),
        *detect_memory_health(telemetry, acceptance.memory_health),
        *detect_stack_changes(telemetry, acceptance.stack_change),
        *detect_liveness(telemetry, acceptance.liveness),
        *detect_sdc(telemetry, acceptance.sdc),
    ]


def detect_fleet(fleet: Sequence[DeviceTelemetry], acceptance: Acceptance) -> list[Detection]:
    """What only a comparison across devices finds: a device slower than its identical peers."""
    return detect_slow_peers(fleet, acceptance.throughput)

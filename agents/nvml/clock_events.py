"""The clock-event (throttle) reasons bitmask of nvmlDeviceGetCurrentClocksEventReasons, as named flags."""

from __future__ import annotations

# Bit values from NVML's nvmlClocksEventReasons (nvml.h; the same bits as the older ClocksThrottleReasons).
CLOCK_EVENT_FLAGS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock": 0x100,
}

GPU_IDLE = CLOCK_EVENT_FLAGS["gpu_idle"]


def decode_clock_events(mask: int) -> dict[str, bool]:
    """Each named reason and whether it is set in `mask`; unnamed bits are ignored."""
    return {name: bool(mask & bit) for name, bit in CLOCK_EVENT_FLAGS.items()}

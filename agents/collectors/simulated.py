"""Simulated accelerators, read through the state they publish, as NVML reads a real GPU."""

from __future__ import annotations

from typing import ClassVar

from agents.collectors.base import CollectContext, Collected
from agents.config import AgentSettings
from agents.xid import classify
from soak.nodes.schemas import DeviceIn
from soak.sim.device import SimSpec
from soak.sim.state import read_readings

STALE_AFTER_S = 5.0


class SimulatedCollector:
    """Temperature, power, clocks, throttle reasons, memory and driver errors of this node's simulated devices."""

    name: ClassVar[str] = "simulated"

    def __init__(self, settings: AgentSettings) -> None:
        self._settings = settings
        self._names = [f"sim{settings.sim_first_index + i}" for i in range(settings.simulated)]
        self._last_event_s: dict[str, float] = {}
        self._last_reading_s: dict[str, float] = {}

    def devices(self) -> list[DeviceIn]:
        spec = SimSpec(name="template")
        return [
            DeviceIn(
                name=name,
                backend="sim",
                index=position,
                vendor="simulated",
                model=spec.model,
                uuid=f"SIM-{self._settings.node_name}-{position:02d}",
                bus_id=f"00000000:{0x18 + position:02X}:00.0",
                driver_version="sim-1.0",
                memory_total_bytes=spec.memory_total_bytes,
                simulated=True,
            )
            for position, name in enumerate(self._names)
        ]

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        collected = Collected()
        readings = read_readings(self._settings.sim_state_dir, max_age_s=STALE_AFTER_S, now_s=now_s)
        for name in self._names:
            reading = readings.get(name)
            if reading is None:
                continue  # no worker drives it right now: no data, not an error
            if reading.time_s <= self._last_reading_s.get(name, 0.0):
                continue  # the device has not published since the last cycle: nothing new to send
            self._last_reading_s[name] = reading.time_s
            for metric, value in (
                ("device.temperature_c", reading.temperature_c),
                ("device.power_w", reading.power_w),
                ("device.power_limit_w", reading.power_limit_w),
                ("device.energy_j", reading.energy_j),
                ("device.sm_clock_mhz", reading.sm_clock_mhz),
                ("device.clock_event_reasons", reading.clock_event_reasons),
                ("device.utilization_ratio", reading.utilization_ratio),
                ("device.memory_used_bytes", reading.memory_used_bytes),
                ("device.memory_total_bytes", reading.memory_total_bytes),
            ):
                collected.sample(reading.time_s, metric, value, name)
            seen_s = self._last_event_s.get(name, 0.0)
            for event in reading.driver_events:
                if event.time_s <= seen_s:
                    continue
                xid = classify(event.code)
                collected.events.append(
                    {
                        "time_s": event.time_s,
                        "device": name,
                        "kind": "driver_error",
                        "severity": xid.severity,
                        "code": event.code,
                        "message": f"XID {event.code}: {xid.action}",
                        "raw": event.raw,
                    }
                )
                self._last_event_s[name] = max(self._last_event_s.get(name, 0.0), event.time_s)
        return collected

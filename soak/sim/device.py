"""A seeded, deterministic simulated accelerator: power capping, heating, throttling, noise and faults.

The defaults describe a real NVIDIA H200 as NVML reads it: 700 W TDP, slowdown at 89 C, shutdown at 95 C,
1980 MHz max SM clock, 141 GB of HBM, about 36 C and 90 W when idle.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from soak.plan import Fault
from soak.sim.faults import DeviceFaults, DriverEvent, stable_name_hash
from soak.sim.profile import SimProfile

__all__ = [
    "CLOCK_REASON_HW_THERMAL",
    "CLOCK_REASON_IDLE",
    "CLOCK_REASON_SW_POWER_CAP",
    "CLOCK_REASON_SW_THERMAL",
    "DriverEvent",
    "SimReading",
    "SimSpec",
    "SimulatedDevice",
]

# NVML clock-event reasons (nvmlDeviceGetCurrentClocksEventReasons).
CLOCK_REASON_IDLE = 0x1
CLOCK_REASON_SW_POWER_CAP = 0x4
CLOCK_REASON_SW_THERMAL = 0x20
CLOCK_REASON_HW_THERMAL = 0x40

# Longer advances are integrated in steps no longer than this, a quarter of the 2 s power-cap lag, so the
# readings hardly depend on how often the caller samples. Each lag is solved exactly within a step.
MAX_STEP_S = 0.5
# Share of a workload's power above idle that does not fall with the SM clock (HBM, leakage, uncore). Chosen
# so that a GEMM demanding 1.15 x TDP settles at ~1450 MHz under the 700 W cap, as a real H200 does.
CLOCK_INDEPENDENT_LOAD_SHARE = 0.68
# The power-cap controller lowers the clock over seconds; boosting when load arrives is near-instant.
THROTTLE_TIME_CONSTANT_S = 2.0
BOOST_TIME_CONSTANT_S = 0.25
# Software thermal slowdown: clock cut per degree above the slowdown threshold.
THERMAL_SLOWDOWN_MHZ_PER_C = 120.0
# The power controller counts as lowering the clock once it allows less than max clock by more than this.
CLOCK_TOLERANCE_MHZ = 1.0
# Hardware thermal slowdown engages this close to the shutdown threshold and drops to the lowest clock.
HW_THERMAL_MARGIN_C = 2.0
# Ornstein-Uhlenbeck noise: relative throughput jitter, sensor temperature wander and power ripple.
THROUGHPUT_NOISE_SD = 0.01
THROUGHPUT_NOISE_TIME_CONSTANT_S = 20.0
TEMPERATURE_NOISE_SD_C = 0.3
TEMPERATURE_NOISE_TIME_CONSTANT_S = 30.0
POWER_NOISE_SD = 0.004
POWER_NOISE_TIME_CONSTANT_S = 3.0


@dataclass(frozen=True)
class SimSpec:
    """The fixed properties of one simulated accelerator."""

    name: str
    model: str = "Simulated H200"
    memory_total_bytes: int = 150_754_820_096
    tdp_w: float = 700.0
    idle_power_w: float = 90.0
    max_sm_clock_mhz: float = 1980.0
    idle_sm_clock_mhz: float = 345.0
    slowdown_temp_c: float = 89.0
    shutdown_temp_c: float = 95.0
    ambient_temp_c: float = 30.0
    thermal_resistance_c_per_w: float = 0.075
    """Steady-state temperature is about ambient + this x power."""
    thermal_time_constant_s: float = 45.0
    base_memory_used_bytes: int = 644_939_776


@dataclass(frozen=True)
class SimReading:
    """What the device reports at one instant, in NVML's terms."""

    time_s: float
    temperature_c: float
    power_w: float
    power_limit_w: float
    energy_j: float
    """Cumulative since this device object was built; a restarted worker starts again from zero."""
    sm_clock_mhz: float
    clock_event_reasons: int
    """NVML bitmask: 0x1 idle, 0x4 SW power cap, 0x20 SW thermal, 0x40 HW thermal."""
    utilization_ratio: float
    memory_used_bytes: int
    memory_total_bytes: int
    units_per_s: float
    """Instantaneous throughput; 0 when idle or hung."""
    hung: bool
    driver_events: tuple[DriverEvent, ...]
    """New since the previous advance()."""
    sdc_events: int
    """New silent-data-corruption events since the previous advance()."""
    host_leak_bytes: int
    """Bytes the worker process should by now hold leaked in host RAM."""


class SimulatedDevice:
    """One simulated accelerator, advanced through time by the worker that loads it."""

    def __init__(
        self, spec: SimSpec, *, faults: Sequence[Fault], campaign_start_s: float, seed: int, start_s: float
    ) -> None:
        self.spec = spec
        self._faults = DeviceFaults(
            faults,
            device_name=spec.name,
            campaign_start_s=campaign_start_s,
            process_start_s=start_s,
            seed=seed,
        )
        # The start time is part of the seed so a restarted worker does not replay its predecessor's noise.
        start_ms = round(start_s * 1000.0) % 2**64
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, stable_name_hash(spec.name), 0, start_ms]))
        self._time_s = start_s
        self._temperature_c = spec.ambient_temp_c + spec.thermal_resistance_c_per_w * spec.idle_power_w
        self._sm_clock_mhz = spec.idle_sm_clock_mhz
        # The clock the power controller currently allows.
        self._cap_mhz = spec.max_sm_clock_mhz
        self._power_w = spec.idle_power_w
        self._energy_j = 0.0
        self._hung = False
        # Noise starts from its stationary distribution so the first readings are as noisy as later ones.
        initial = self._rng.standard_normal(3)
        self._throughput_noise = float(initial[0]) * THROUGHPUT_NOISE_SD
        self._temperature_noise_c = float(initial[1]) * TEMPERATURE_NOISE_SD_C
        self._power_noise = float(initial[2]) * POWER_NOISE_SD

    @property
    def time_s(self) -> float:
        """Time of the latest advance (or the start), epoch seconds."""
        return self._time_s

    def advance(self, now_s: float, profile: SimProfile | None, duty_cycle: float) -> SimReading:
        """Integrate the device from the previous time to now_s under this load (None = idle) and read it."""
        if not 0.0 <= duty_cycle <= 1.0:
            raise ValueError(f"duty_cycle must be between 0 and 1, got {duty_cycle}")
        loaded = profile is not None and duty_cycle > 0.0
        elapsed_s = max(0.0, now_s - self._time_s)
        steps = math.ceil(elapsed_s / MAX_STEP_S)
        if steps:
            step_s = elapsed_s / steps
            normals: list[list[float]] = self._rng.standard_normal((steps, 3)).tolist()
            for index in range(steps):
                self._step(self._time_s + (index + 1) * step_s, step_s, profile if loaded else None, duty_cycle)
                self._step_noise(step_s, normals[index])
            self._time_s = now_s
        driver_events = tuple(self._faults.take_driver_events(self._time_s))
        # Corruption needs results to corrupt: arrivals while nothing computes go unseen.
        sdc_events = self._faults.take_sdc_events(self._time_s)
        return self._reading(
            profile,
            duty_cycle if loaded else 0.0,
            driver_events,
            sdc_events if loaded and not self._hung else 0,
        )

    def _step(self, time_s: float, step_s: float, profile: SimProfile | None, duty_cycle: float) -> None:
        spec = self.spec
        self._hung = self._hung or self._faults.is_hung(time_s)
        # A hung kernel keeps the device busy-looking but its stalled SMs draw next to nothing.
        power_duty = 0.0 if self._hung else duty_cycle
        # The power controller reacts to over-draw within seconds, so a new load briefly overshoots the limit.
        cap_mhz = self._power_cap_clock_mhz(profile, power_duty)
        cap_time_constant_s = THROTTLE_TIME_CONSTANT_S if cap_mhz < self._cap_mhz else BOOST_TIME_CONSTANT_S
        self._cap_mhz += (cap_mhz - self._cap_mhz) * _approach(step_s, cap_time_constant_s)
        target_mhz = spec.idle_sm_clock_mhz
        if profile is not None:
            target_mhz = self._thermal_clock_mhz(min(self._cap_mhz, spec.max_sm_clock_mhz))
        self._sm_clock_mhz += (target_mhz - self._sm_clock_mhz) * _approach(step_s, BOOST_TIME_CONSTANT_S)
        self._power_w = self._power_demand_w(self._sm_clock_mhz, profile, power_duty)
        self._energy_j += self._power_w * step_s
        equilibrium_c = (
            spec.ambient_temp_c + spec.thermal_resistance_c_per_w * self._power_w + self._faults.extra_heating_c(time_s)
        )
        self._temperature_c += (equilibrium_c - self._temperature_c) * _approach(step_s, spec.thermal_time_constant_s)
        # A real device powers off here; the simulated one holds at the threshold so a campaign can watch it.
        self._temperature_c = min(self._temperature_c, spec.shutdown_temp_c)

    def _step_noise(self, step_s: float, normals: list[float]) -> None:
        self._throughput_noise = _ornstein_uhlenbeck(
            self._throughput_noise, step_s, THROUGHPUT_NOISE_TIME_CONSTANT_S, THROUGHPUT_NOISE_SD, normals[0]
        )
        self._temperature_noise_c = _ornstein_uhlenbeck(
            self._temperature_noise_c,
            step_s,
            TEMPERATURE_NOISE_TIME_CONSTANT_S,
            TEMPERATURE_NOISE_SD_C,
            normals[1],
        )
        self._power_noise = _ornstein_uhlenbeck(
            self._power_noise, step_s, POWER_NOISE_TIME_CONSTANT_S, POWER_NOISE_SD, normals[2]
        )

    def _power_demand_w(self, sm_clock_mhz: float, profile: SimProfile | None, duty_cycle: float) -> float:
        spec = self.spec
        if profile is None:
            return spec.idle_power_w
        load_w = max(0.0, spec.tdp_w * profile.power_fraction - spec.idle_power_w) * duty_cycle
        clock_ratio = sm_clock_mhz / spec.max_sm_clock_mhz
        share = CLOCK_INDEPENDENT_LOAD_SHARE
        return spec.idle_power_w + load_w * (share + (1.0 - share) * clock_ratio**2)

    def _power_cap_clock_mhz(self, profile: SimProfile | None, duty_cycle: float) -> float:
        """The clock at which this load draws exactly the power limit (max clock when it never reaches it)."""
        spec = self.spec
        peak_demand_w = self._power_demand_w(spec.max_sm_clock_mhz, profile, duty_cycle)
        if peak_demand_w <= spec.tdp_w:
            return spec.max_sm_clock_mhz
        load_w = peak_demand_w - spec.idle_power_w
        share = CLOCK_INDEPENDENT_LOAD_SHARE
        clock_ratio_squared = ((spec.tdp_w - spec.idle_power_w) / load_w - share) / (1.0 - share)
        return max(spec.idle_sm_clock_mhz, spec.max_sm_clock_mhz * math.sqrt(max(0.0, clock_ratio_squared)))

    def _thermal_clock_mhz(self, allowed_mhz: float) -> float:
        """The clock left of allowed_mhz once thermal slowdown has cut it for the current temperature."""
        spec = self.spec
        if self._temperature_c >= spec.shutdown_temp_c - HW_THERMAL_MARGIN_C:
            return spec.idle_sm_clock_mhz
        over_c = max(0.0, self._temperature_c - spec.slowdown_temp_c)
        return max(spec.idle_sm_clock_mhz, allowed_mhz - THERMAL_SLOWDOWN_MHZ_PER_C * over_c)

    def _clock_event_reasons(self, profile: SimProfile | None, duty_cycle: float) -> int:
        spec = self.spec
        thermal_slowdown = self._temperature_c >= spec.slowdown_temp_c
        reasons = CLOCK_REASON_SW_THERMAL if thermal_slowdown else 0
        if self._temperature_c >= spec.shutdown_temp_c - HW_THERMAL_MARGIN_C:
            reasons |= CLOCK_REASON_HW_THERMAL
        if profile is None or duty_cycle == 0.0:
            reasons |= CLOCK_REASON_IDLE
        # Once thermal slowdown engages it holds the clock below what the power limit allows.
        elif self._cap_mhz < spec.max_sm_clock_mhz - CLOCK_TOLERANCE_MHZ and not thermal_slowdown:
            reasons |= CLOCK_REASON_SW_POWER_CAP
        return reasons

    def _reading(
        self,
        profile: SimProfile | None,
        duty_cycle: float,
        driver_events: tuple[DriverEvent, ...],
        sdc_events: int,
    ) -> SimReading:
        spec = self.spec
        memory_used_bytes = spec.base_memory_used_bytes + self._faults.device_leak_bytes(self._time_s)
        if profile is not None:
            memory_used_bytes += int(profile.memory_fraction * spec.memory_total_bytes)
        units_per_s = 0.0
        if profile is not None and duty_cycle > 0.0 and not self._hung:
            units_per_s = (
                profile.peak_units_per_s
                * self._sm_clock_mhz
                / spec.max_sm_clock_mhz
                * duty_cycle
                * self._faults.throughput_factor(self._time_s)
                * (1.0 + self._throughput_noise)
            )
        return SimReading(
            time_s=self._time_s,
            temperature_c=self._temperature_c + self._temperature_noise_c,
            power_w=self._power_w * (1.0 + self._power_noise),
            power_limit_w=spec.tdp_w,
            energy_j=self._energy_j,
            sm_clock_mhz=self._sm_clock_mhz,
            clock_event_reasons=self._clock_event_reasons(profile, duty_cycle),
            # A hung kernel still occupies the device, so NVML keeps reporting it busy.
            utilization_ratio=1.0 if self._hung and profile is not None else duty_cycle,
            memory_used_bytes=min(memory_used_bytes, spec.memory_total_bytes),
            memory_total_bytes=spec.memory_total_bytes,
            units_per_s=units_per_s,
            hung=self._hung,
            driver_events=driver_events,
            sdc_events=sdc_events,
            host_leak_bytes=self._faults.host_leak_bytes(self._time_s),
        )


def _ornstein_uhlenbeck(value: float, step_s: float, time_constant_s: float, sd: float, normal: float) -> float:
    # Exact discretisation, so the noise's spread and correlation time do not depend on the step length.
    decay = math.exp(-step_s / time_constant_s)
    return value * decay + sd * math.sqrt(1.0 - decay * decay) * normal


def _approach(step_s: float, time_constant_s: float) -> float:
    """Fraction of the way to its target a first-order lag covers in step_s."""
    return -math.expm1(-step_s / time_constant_s)

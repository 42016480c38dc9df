"""Healthy behaviour of an H100 running one steady training workload for weeks.

Everything a healthy device does that a detector must not mistake for a fault: AR(1) noise correlated over
minutes, a diurnal cycle (the machine room is warmer in the afternoon, so temperature rises and throughput dips),
power-cap plateaus with the sw_power_cap bit set, a garbage-collection sawtooth in RSS, allocator steps and frees
in reserved memory, checkpoint blips in open files, rare corrected ECC errors and PCIe replays, and rare
application XIDs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from soak.analysis.sim.draft import THROUGHPUT_SERIES, DeviceDraft
from soak.analysis.sim.processes import (
    FloatArray,
    ar1,
    first_order_lag,
    poisson_increments,
    sawtooth,
    two_state_plateaus,
)
from soak.analysis.sim.spec import FleetSpec

GIB = float(2**30)
MB = 1e6
SECONDS_PER_DAY = 86_400.0

POWER_LIMIT_W = 700.0
IDLE_POWER_W = 85.0
HUNG_POWER_W = 170.0
MAX_SM_CLOCK_MHZ = 1980.0
IDLE_SM_CLOCK_MHZ = 345.0
CLOCK_STEP_MHZ = 15.0
SLOWDOWN_C = 87.0
NOMINAL_THROUGHPUT = 1000.0  # samples/s of the training workload on one device
# Share of a clock cut that the training step loses (it is partly memory-bound).
THROUGHPUT_PER_CLOCK = 0.25
CONTEXT_BYTES = 0.55 * GIB  # CUDA context on top of what the allocator reserves
DRIVER_RESERVED_BYTES = 0.45 * GIB  # what NVML reports used with no process on the device
MAX_CACHED_BYTES = 4.0 * GIB  # the most the caching allocator keeps above its usual reserve

SW_POWER_CAP = 0x4
GPU_IDLE = 0x1

# NVML counters that restart at a GPU reset.
VOLATILE_COUNTERS = frozenset(
    {"device.ecc_corrected_volatile_errors", "device.ecc_uncorrected_volatile_errors", "device.pcie_replays"}
)


@dataclass(frozen=True)
class FleetClimate:
    """What all devices share: the machine room's day and the size of its effect."""

    throughput_diurnal: float  # fractional amplitude of the daily throughput cycle (half its peak-to-trough swing)
    temperature_diurnal_c: float
    warmest_hour_utc: float
    node_phase_s: Mapping[str, float]  # each node's rack sits in a slightly different airflow
    checkpoint_period_s: float


def draw_climate(rng: np.random.Generator, nodes: list[str]) -> FleetClimate:
    """A fleet's shared cycle: 1-2 % throughput and 3-6 C temperature peak to trough, nodes a little out of phase.

    Llama 3's pre-training saw a 1-2 % diurnal throughput swing, mid-day heat lowering GPU clocks.
    """
    return FleetClimate(
        throughput_diurnal=float(rng.uniform(0.005, 0.01)),
        temperature_diurnal_c=float(rng.uniform(1.5, 3.0)),
        warmest_hour_utc=float(rng.uniform(13.0, 17.0)),
        node_phase_s={node: float(rng.normal(0.0, 1200.0)) for node in nodes},
        checkpoint_period_s=float(rng.choice([1800.0, 3600.0])),
    )


def fill_healthy(draft: DeviceDraft, rng: np.random.Generator, climate: FleetClimate, spec: FleetSpec) -> None:
    """Give the draft a healthy device's values, given when its worker ran, hung or was absent."""
    n, dt, t = draft.n, draft.sample_interval_s, draft.time_s
    working, hung, dead = draft.progress, draft.alive & ~draft.progress, ~draft.alive
    seconds_of_day = t - climate.warmest_hour_utc * 3600.0 - climate.node_phase_s[draft.node]
    warmth = np.cos(2.0 * math.pi * np.mod(seconds_of_day, SECONDS_PER_DAY) / SECONDS_PER_DAY)

    # Power-cap plateaus: this device's silicon and airflow decide how much of the time it sits at the cap.
    cap_share = rng.uniform(0.5, 0.85)
    mean_at_cap_s = rng.uniform(*spec.power_cap_dwell_s)
    at_cap = working & two_state_plateaus(
        rng, n, mean_on_s=mean_at_cap_s, mean_off_s=mean_at_cap_s * (1 - cap_share) / cap_share, interval_s=dt
    )
    deficit_mhz = np.clip(120.0 + ar1(rng, n, sd=40.0, correlation_s=60.0, interval_s=dt), CLOCK_STEP_MHZ, 400.0)
    deficit_mhz = np.round(deficit_mhz / CLOCK_STEP_MHZ) * CLOCK_STEP_MHZ
    clock = np.where(at_cap, MAX_SM_CLOCK_MHZ - deficit_mhz, MAX_SM_CLOCK_MHZ)
    clock[dead] = IDLE_SM_CLOCK_MHZ
    below_cap_w = np.clip(645.0 + ar1(rng, n, sd=15.0, correlation_s=120.0, interval_s=dt), 590.0, 694.0)
    power = np.where(at_cap, POWER_LIMIT_W + rng.normal(0.0, 1.5, n), below_cap_w)
    power[hung] = HUNG_POWER_W + rng.normal(0.0, 5.0, int(hung.sum()))
    power[dead] = IDLE_POWER_W + rng.normal(0.0, 3.0, int(dead.sum()))
    reasons = np.where(at_cap, float(SW_POWER_CAP), 0.0)
    reasons[dead] = float(GPU_IDLE)
    utilization: FloatArray = np.where(working, np.minimum(0.985 + rng.normal(0.0, 0.01, n), 1.0), 0.0)
    busy: FloatArray = np.minimum(0.95 + ar1(rng, n, sd=0.01, correlation_s=60.0, interval_s=dt), 1.0)
    utilization[hung] = 1.0  # a hung kernel keeps the SMs "busy"

    loaded_power_w = cap_share * POWER_LIMIT_W + (1 - cap_share) * 645.0
    busy_c, idle_c = rng.uniform(60.0, 72.0), rng.uniform(33.0, 40.0)
    heat = first_order_lag(
        (power - IDLE_POWER_W) / (loaded_power_w - IDLE_POWER_W), time_constant_s=180.0, interval_s=dt
    )
    temperature = (
        idle_c
        + (busy_c - idle_c) * heat
        + climate.temperature_diurnal_c * warmth
        + ar1(rng, n, sd=0.6, correlation_s=300.0, interval_s=dt)
    )

    base = NOMINAL_THROUGHPUT * (1.0 + rng.normal(0.0, 0.006))
    throughput = (
        base
        * (1.0 - climate.throughput_diurnal * warmth)
        * (1.0 + ar1(rng, n, sd=0.01, correlation_s=rng.uniform(*spec.throughput_noise_correlation_s), interval_s=dt))
        * (1.0 - THROUGHPUT_PER_CLOCK * (MAX_SM_CLOCK_MHZ - np.minimum(clock, MAX_SM_CLOCK_MHZ)) / MAX_SM_CLOCK_MHZ)
    )
    _settle_after_restarts(draft, throughput)

    draft.values.update(
        {
            f"throughput.{THROUGHPUT_SERIES}": throughput,
            "worker.busy_ratio": busy,
            "device.utilization_ratio": utilization,
            "device.temperature_c": temperature,
            "device.temperature_slowdown_c": SLOWDOWN_C,
            "device.power_w": power,
            "device.power_limit_w": POWER_LIMIT_W,
            "device.sm_clock_mhz": clock,
            "device.sm_clock_max_mhz": MAX_SM_CLOCK_MHZ,
            "device.clock_event_reasons": reasons,
            "device.memory_total_bytes": draft.memory_total_bytes,
            "device.ecc_uncorrected_aggregate_errors": 0.0,
            "device.remapped_rows_correctable": float(rng.choice([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0])),
            "device.remapped_rows_uncorrectable": 0.0,
            "device.remapped_rows_pending": 0.0,
            "device.remapped_rows_failure": 0.0,
            "device.pcie_link_gen": 5.0,
            "device.pcie_link_gen_max": 5.0,
            "device.pcie_link_width": 16.0,
            "device.pcie_link_width_max": 16.0,
        }
    )
    _fill_memory(draft, rng)
    _fill_process(draft, rng, climate)
    _fill_rare_events(draft, rng)


def _settle_after_restarts(draft: DeviceDraft, throughput: FloatArray) -> None:
    """A fresh worker runs slower for its first samples while it compiles and warms its caches."""
    for start_s in draft.process_starts_s():
        first = draft.index(float(start_s))
        ramp = np.array([0.55, 0.8, 0.93])[: max(0, min(3, draft.n - first))]
        throughput[first : first + ramp.size] *= ramp


def _fill_memory(draft: DeviceDraft, rng: np.random.Generator) -> None:
    """Allocated memory flat with step-to-step noise; reserved above it, stepping up and freed now and then."""
    n, capacity = draft.n, draft.memory_total_bytes
    allocated = draft.allocated_share * capacity + rng.normal(0.0, 0.002 * capacity, n)
    # The caching allocator keeps a new block after a peak (a step up) until empty_cache or a restart frees it.
    changes = rng.uniform(draft.time_s[0], draft.time_s[-1], rng.poisson(draft.n * draft.sample_interval_s / 21600))
    extra_bytes, level = np.zeros(n), 0.0
    restarts = {draft.index(float(start_s)) for start_s in draft.process_starts_s()}
    for index in sorted({draft.index(float(time_s)) for time_s in changes} | restarts):
        stepped = min(level + rng.uniform(0.5, 2.0) * GIB, MAX_CACHED_BYTES)
        level = 0.0 if index in restarts or rng.random() < 0.4 else stepped
        extra_bytes[index:] = level
    reserved = np.round((draft.allocated_share * capacity + draft.reserved_slack_bytes + extra_bytes) / (2 * 2**20)) * (
        2 * 2**20
    )
    used = np.where(draft.alive, reserved + CONTEXT_BYTES, DRIVER_RESERVED_BYTES)
    draft.values.update(
        {
            "worker.memory_allocated_bytes": allocated,
            "worker.memory_reserved_bytes": reserved,
            "device.memory_used_bytes": used,
        }
    )


def _fill_process(draft: DeviceDraft, rng: np.random.Generator, climate: FleetClimate) -> None:
    """RSS with a garbage-collection sawtooth; open files and threads flat but for checkpoint blips."""
    n, t = draft.n, draft.time_s
    rss = (
        rng.uniform(3.0, 6.0) * GIB
        + sawtooth(
            rng,
            t,
            amplitude=rng.uniform(100.0, 300.0) * MB,
            period_s=rng.uniform(10.0, 40.0) * 60.0,
            jitter=0.25,
            restarts_s=draft.process_starts_s(),
        )
        + rng.normal(0.0, 4.0 * MB, n)
    )
    offset_s = rng.uniform(0.0, climate.checkpoint_period_s)
    checkpointing = (np.mod(t - offset_s, climate.checkpoint_period_s) < rng.uniform(30.0, 60.0)).astype(np.float64)
    draft.values.update(
        {
            "process.rss_bytes": rss,
            "process.open_files": float(rng.integers(140, 200)) + 6.0 * checkpointing,
            "process.threads": float(rng.integers(60, 90)) + 2.0 * checkpointing,
        }
    )


def _fill_rare_events(draft: DeviceDraft, rng: np.random.Generator) -> None:
    """Corrected ECC errors and PCIe replays a few times a month, application XIDs about once a month."""
    n, dt = draft.n, draft.sample_interval_s
    samples_per_day = SECONDS_PER_DAY / dt
    corrected = poisson_increments(rng, rng.lognormal(math.log(0.03), 1.0) / samples_per_day, n)
    replays = poisson_increments(rng, rng.lognormal(math.log(0.1), 1.0) / samples_per_day, n)
    replays *= rng.integers(1, 4, n)  # replays come in small bursts
    draft.increments.update(
        {
            "device.ecc_corrected_volatile_errors": corrected,
            "device.ecc_corrected_aggregate_errors": corrected.copy(),
            "device.ecc_uncorrected_volatile_errors": np.zeros(n),
            "device.pcie_replays": replays,
        }
    )
    draft.increments["device.ecc_corrected_aggregate_errors"][0] += float(rng.integers(0, 40))
    days = n / samples_per_day
    # Application XIDs (13, 31: info) about monthly; an isolated channel timeout (XID 8: warning) more rarely.
    for code, per_day in ((13, 1 / 60), (31, 1 / 60), (8, 1 / 120)):
        for time_s in rng.uniform(draft.time_s[0], draft.time_s[-1], rng.poisson(per_day * days)):
            if draft.progress[min(draft.index(float(time_s)), n - 1)]:
                draft.xid(float(time_s), code)
    draft.values["device.energy_j"] = 0.0  # filled from the final power in finish_counters
    draft.values["device.violation_power_s"] = 0.0
    draft.values["device.violation_thermal_s"] = 0.0


def finish_counters(draft: DeviceDraft) -> None:
    """Counters that integrate the final power and throttle state, after the faults have changed them."""
    dt = draft.sample_interval_s
    power = draft.array("device.power_w")
    reasons = draft.array("device.clock_event_reasons").astype(np.int64)
    draft.values["device.energy_j"] = np.cumsum(power * dt)
    draft.values["device.violation_power_s"] = np.cumsum(((reasons & SW_POWER_CAP) != 0) * dt).astype(np.float64)
    draft.values["device.violation_thermal_s"] = np.cumsum(((reasons & 0x60) != 0) * dt).astype(np.float64)

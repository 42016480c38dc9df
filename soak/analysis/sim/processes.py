"""The random processes healthy telemetry is made of: AR(1) noise, thermal lag, plateaus, sawtooth, counters."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def ar1(rng: np.random.Generator, n: int, *, sd: float, correlation_s: float, interval_s: float) -> FloatArray:
    """Stationary AR(1) noise with marginal standard deviation `sd` that forgets itself over `correlation_s`."""
    phi = math.exp(-interval_s / correlation_s)
    shocks = rng.normal(0.0, sd * math.sqrt(1.0 - phi**2), n)
    shocks[0] = rng.normal(0.0, sd)  # start in the stationary distribution, not at zero
    noise: FloatArray = signal.lfilter([1.0], [1.0, -phi], shocks)
    return noise


def first_order_lag(drive: FloatArray, *, time_constant_s: float, interval_s: float) -> FloatArray:
    """How a thermal mass follows `drive`: an exponential lag starting settled at its first value."""
    keep = math.exp(-interval_s / time_constant_s)
    lagged, _ = signal.lfilter([1.0 - keep], [1.0, -keep], drive, zi=[keep * drive[0]])
    result: FloatArray = lagged
    return result


def two_state_plateaus(
    rng: np.random.Generator, n: int, *, mean_on_s: float, mean_off_s: float, interval_s: float
) -> BoolArray:
    """A switching state (e.g. held at the power cap) whose on and off stretches last exponential times."""
    mean_cycle_s = mean_on_s + mean_off_s
    draws = int(n * interval_s / mean_cycle_s * 1.5) + 16
    on_samples = np.maximum(1, np.round(rng.exponential(mean_on_s, draws) / interval_s)).astype(np.int64)
    off_samples = np.maximum(1, np.round(rng.exponential(mean_off_s, draws) / interval_s)).astype(np.int64)
    lengths = np.column_stack([on_samples, off_samples]).ravel()
    states = np.tile([True, False], draws)
    if rng.random() < mean_off_s / mean_cycle_s:  # start in either state at its long-run odds
        lengths, states = lengths[1:], states[1:]
    plateaus: BoolArray = np.repeat(states, lengths)[:n]
    if plateaus.size < n:
        plateaus = np.concatenate([plateaus, np.zeros(n - plateaus.size, dtype=bool)])
    return plateaus


def sawtooth(
    rng: np.random.Generator,
    time_s: FloatArray,
    *,
    amplitude: float,
    period_s: float,
    jitter: float,
    restarts_s: FloatArray,
) -> FloatArray:
    """Linear growth that drops back to zero at the end of each cycle (garbage collection) and at each restart."""
    span_s = float(time_s[-1] - time_s[0]) + period_s
    cycles = int(span_s / (period_s * (1.0 - jitter))) + 2
    lengths_s = period_s * rng.uniform(1.0 - jitter, 1.0 + jitter, cycles)
    boundaries_s = np.sort(np.concatenate([time_s[0] + np.cumsum(lengths_s) - lengths_s[0], restarts_s]))
    which = np.clip(np.searchsorted(boundaries_s, time_s, side="right") - 1, 0, boundaries_s.size - 1)
    # A cycle cut short by a restart grows at the same rate; a longer one climbs a little past the amplitude.
    growth: FloatArray = amplitude * (time_s - boundaries_s[which]) / period_s
    return growth


def poisson_increments(rng: np.random.Generator, rate_per_sample: FloatArray | float, n: int) -> FloatArray:
    """Counts of rare events per sample at the given rate (scalar or per sample)."""
    counts: FloatArray = rng.poisson(np.broadcast_to(rate_per_sample, (n,))).astype(np.float64)
    return counts


def counter(increments: FloatArray, reset_indices: list[int]) -> FloatArray:
    """A cumulative counter of `increments` that restarts from zero at each reset (a volatile NVML counter)."""
    total = np.cumsum(increments)
    if not reset_indices:
        return total
    before = np.concatenate([[0.0], total])
    base_index = np.zeros(increments.size, dtype=np.int64)
    base_index[np.asarray(sorted(reset_indices), dtype=np.int64)] = np.asarray(sorted(reset_indices))
    base_index = np.maximum.accumulate(base_index)
    reset: FloatArray = total - before[base_index]
    return reset

"""Series rebuilt from minute rollups: a pass over weeks of telemetry reads a row a minute, not a sample a second.

What a detector does with a metric decides whether a minute's summary (count, sum, minimum, maximum, time of the
latest sample) can stand in for its samples:

- Gauges judged on blocks of minutes (memory for leaks, throughput for drift, peers and stack changes, temperature
  margin, power and clocks for thermal evidence), and the few other metrics named below PER_SAMPLE_METRICS: a full
  minute is rebuilt as `count` samples at the metric's own cadence, ending at its latest sample, the first at the
  minute's minimum, the last at its maximum and the others at the mean of the rest. Every minute's count, sum (so
  every block mean), minimum (the leak detector's floor) and maximum are the stored ones; only where in the minute
  each sample lay is lost.
- Metrics read sample by sample (PER_SAMPLE_METRICS): a bitmask whose bits are counted per sample (thermal
  residency), error counters whose every increase is dated (ECC, remapped rows, retired pages, PCIe replays) and
  PCIe link states. A minute in which the reading did not change is rebuilt exactly; a minute in which it changed
  is read raw.
- Any minute short of the metric's usual count (a gap, a workload run starting or ending in it, the minute still
  filling) is read raw, so that sample times are true where gaps (liveness) and run boundaries (steady windows)
  are judged.

Raw samples older than the retention (SOAK_RAW_RETENTION_DAYS) are retired once rolled up: a minute that would be
read raw but has none left is rebuilt from its summary.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from soak.analysis.memory_health import (
    ECC_CORRECTED_AGGREGATE,
    ECC_CORRECTED_VOLATILE,
    ECC_UNCORRECTED_AGGREGATE,
    ECC_UNCORRECTED_VOLATILE,
    PCIE_LINK_GEN,
    PCIE_LINK_GEN_MAX,
    PCIE_LINK_WIDTH,
    PCIE_LINK_WIDTH_MAX,
    PCIE_REPLAYS,
    REMAPPED_ROWS_FAILURE,
    REMAPPED_ROWS_PENDING,
    REMAPPED_ROWS_UNCORRECTABLE,
    RETIRED_PAGES_DOUBLE_BIT,
    RETIRED_PAGES_PENDING,
    RETIRED_PAGES_SINGLE_BIT,
)
from soak.analysis.series import Series
from soak.analysis.telemetry import EMPTY_SERIES
from soak.telemetry.rollup_models import MinuteRollup
from soak.telemetry.series import MinuteBuckets, device_minute_buckets, device_samples_within

FloatArray = npt.NDArray[np.float64]

BUCKET_S = float(MinuteRollup.bucket_length_s)
# Raw reads of minutes this close are one range: fewer statements for a metric that changes now and then.
MERGE_GAP_S = 30 * BUCKET_S
# Metrics whose individual readings a detector judges; a minute's summary stands in for them only when constant.
PER_SAMPLE_METRICS = frozenset(
    {
        # Thermal counts busy and throttled samples by bit: a mean of bitmasks is no bitmask.
        "device.clock_event_reasons",
        # Error counters: each increase is dated at the reading that shows it and counted whole, and a drop is a
        # reset (a driver reload) that the detector must see as such. They change rarely, so few minutes are raw.
        ECC_CORRECTED_AGGREGATE,
        ECC_CORRECTED_VOLATILE,
        ECC_UNCORRECTED_AGGREGATE,
        ECC_UNCORRECTED_VOLATILE,
        PCIE_REPLAYS,
        REMAPPED_ROWS_FAILURE,
        REMAPPED_ROWS_PENDING,
        REMAPPED_ROWS_UNCORRECTABLE,
        RETIRED_PAGES_DOUBLE_BIT,
        RETIRED_PAGES_PENDING,
        RETIRED_PAGES_SINGLE_BIT,
        # A link is degraded reading by reading (below its maximum generation or width).
        PCIE_LINK_GEN,
        PCIE_LINK_GEN_MAX,
        PCIE_LINK_WIDTH,
        PCIE_LINK_WIDTH_MAX,
    }
)
# Read from summaries although they change every minute, and why that is enough:
# - violation time counters (device.violation_*_s) grow by the second under a cap; thermal reads only how much they
#   rose between two times for its evidence, and a minute rebuilt from minimum to maximum rises exactly as much;
# - busy readings (device.utilization_ratio, worker.busy_ratio) tell memory health whether a degraded link was
#   busy; a minute wholly busy or idle is judged the same, and only a minute in which work started or stopped may
#   be judged on its mean, moving a link finding by less than a minute. As the worker's heartbeat, worker.busy_ratio
#   is judged by its times, which are true in full minutes and read raw in any minute with a gap.


def minute_series(*, session: Session, campaign_id: int, device_id: int) -> dict[str, Series]:
    """Every metric of one device over a campaign, from its minute buckets and the raw samples they cannot replace."""
    buckets = device_minute_buckets(session=session, campaign_id=campaign_id, device_id=device_id)
    raw_minutes = {name: _needs_raw(name, metric) for name, metric in buckets.items()}
    spans = [
        (metric.metric_id, from_s, to_s)
        for name, metric in buckets.items()
        for from_s, to_s in _ranges(metric.bucket_s[raw_minutes[name]])
    ]
    raw = device_samples_within(session=session, campaign_id=campaign_id, device_id=device_id, spans=spans)
    series = {}
    for name, metric in buckets.items():
        wanted = metric.bucket_s[raw_minutes[name]]
        read = raw.get(metric.metric_id, EMPTY_SERIES)
        # A range may bridge minutes that are rebuilt: of what it read, only the wanted minutes' samples count.
        kept = np.isin(_minute_of(read.time_s), wanted)
        read_time_s, read_values = read.time_s[kept], read.values[kept]
        # A minute meant to be read raw whose samples were retired is rebuilt from its summary after all.
        rebuilt = ~np.isin(metric.bucket_s, _minute_of(read_time_s))
        time_s, values = _rebuilt(metric, rebuilt)
        if read_time_s.size:
            time_s = np.concatenate([time_s, read_time_s])
            values = np.concatenate([values, read_values])
            # Raw and rebuilt minutes are disjoint; a stable sort interleaves them without reordering either.
            order = np.argsort(time_s, kind="stable")
            time_s, values = time_s[order], values[order]
        series[name] = Series(time_s, values)
    return series


def _minute_of(time_s: FloatArray) -> FloatArray:
    minute_s: FloatArray = np.floor(time_s / BUCKET_S) * BUCKET_S
    return minute_s


def _usual_count(metric: MinuteBuckets) -> int:
    """How many samples a full minute of this metric holds: a slow counter read every 30 s holds two."""
    return max(1, int(np.median(metric.count)))


def _needs_raw(name: str, metric: MinuteBuckets) -> npt.NDArray[np.bool_]:
    """The minutes whose summary cannot stand in for their samples."""
    usual = _usual_count(metric)
    # One sample fewer is clock jitter (a sample landing just past the minute), not a gap.
    short = (metric.count < usual - 1) & (metric.count > 1)
    if name in PER_SAMPLE_METRICS:
        changed: npt.NDArray[np.bool_] = short | (metric.min_value != metric.max_value)
        return changed
    return short


def _ranges(bucket_s: FloatArray) -> list[tuple[float, float]]:
    """Minutes merged into (from_s, to_s) ranges where less than MERGE_GAP_S lies between them: a raw read per
    stretch, not per minute, at the cost of reading a few minutes that are then rebuilt anyway."""
    if not bucket_s.size:
        return []
    breaks = np.flatnonzero(np.diff(bucket_s) > MERGE_GAP_S) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [bucket_s.size]]) - 1
    return [(float(bucket_s[a]), float(bucket_s[b]) + BUCKET_S) for a, b in zip(starts, ends, strict=True)]


def _rebuilt(metric: MinuteBuckets, chosen: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Samples standing for the chosen minutes: their count, sum, minimum and maximum, at the metric's cadence."""
    count = metric.count[chosen]
    if not count.size:
        return np.empty(0), np.empty(0)
    spacing_s = BUCKET_S / _usual_count(metric)
    minute = np.repeat(np.arange(count.size), count)
    # Position of each sample within its minute: 0 for the first, count - 1 for the last.
    position = np.arange(minute.size) - np.repeat(np.cumsum(count) - count, count)
    from_end = count[minute] - 1 - position
    time_s = np.maximum(metric.last_time_s[chosen][minute] - from_end * spacing_s, metric.bucket_s[chosen][minute])
    low, high, total = metric.min_value[chosen], metric.max_value[chosen], metric.sum_value[chosen]
    with np.errstate(invalid="ignore", divide="ignore"):
        rest = np.clip((total - low - high) / (count - 2), low, high)
    values = rest[minute]
    values = np.where(position == 0, low[minute], values)
    values = np.where(from_end == 0, np.where(count[minute] == 1, total[minute], high[minute]), values)
    return time_s, values

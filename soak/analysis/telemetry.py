"""What the detectors read about one device: its series, its events and when each workload ran steadily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from soak.analysis.series import Series

EMPTY_SERIES = Series(np.empty(0), np.empty(0))
SECONDS_PER_DAY = 86400.0


def campaign_block_s(full_scale_s: float, *, planned_span_s: float, sample_interval_s: float) -> float:
    """A block length for a campaign: full_scale_s when it is planned to run a day or more after warm-up,
    proportionally shorter for a shorter one (a demo of minutes), never shorter than one sample interval."""
    scale = planned_span_s / SECONDS_PER_DAY
    if scale >= 1.0:
        return full_scale_s
    return max(full_scale_s * scale, sample_interval_s)


@dataclass(frozen=True)
class EventRecord:
    """The fields of a stored event the detectors need; `raw` is the source's own text (JSON for soak's)."""

    device: str | None
    time_s: float
    kind: str
    severity: str
    code: int | None = None
    message: str = ""
    raw: str = ""


@dataclass(frozen=True)
class DeviceTelemetry:
    """Everything stored about one device in one campaign, as of `end_s`.

    The same object comes from the store (the engine), from an imported file, or from the fleet simulator, so
    the detectors that the benchmark scores are the ones that run in a campaign.
    """

    device: str
    node: str
    vendor: str
    model: str
    memory_total_bytes: float | None
    start_s: float
    warmup_end_s: float
    end_s: float
    # How often the agent samples: gaps are judged in multiples of it.
    sample_interval_s: float
    # Metric name as in docs/metrics.md → its samples, time-sorted; a metric never reported is absent.
    series: Mapping[str, Series]
    events: Sequence[EventRecord] = ()
    # Throughput series name (the part after "throughput.") → the (start_s, end_s) stretches in which that
    # workload ran past its slot warm-up. No entry means the workload ran throughout (an imported campaign).
    steady_windows: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    # When the campaign is planned to end (None: at end_s). Detectors that scale their time grid to a short
    # campaign use it rather than end_s, so that a verdict does not change as a running campaign's data grows.
    planned_end_s: float | None = None

    @property
    def planned_span_s(self) -> float:
        """Seconds from warm-up end to the planned end of the campaign."""
        end_s = self.planned_end_s if self.planned_end_s is not None else self.end_s
        return max(end_s - self.warmup_end_s, 0.0)

    def block_s(self, full_scale_s: float) -> float:
        """A block length for this campaign (see campaign_block_s)."""
        return campaign_block_s(
            full_scale_s, planned_span_s=self.planned_span_s, sample_interval_s=self.sample_interval_s
        )

    def metric(self, name: str) -> Series:
        """The named series, or an empty one when the device never reported it."""
        return self.series.get(name, EMPTY_SERIES)

    def metrics_with_prefix(self, prefix: str) -> list[str]:
        """The names of the reported series that start with prefix, sorted."""
        return sorted(name for name in self.series if name.startswith(prefix))

    def steady(self, series_name: str, series: Series) -> Series:
        """The part of a workload's series inside its steady windows (all of it when no windows are known)."""
        windows = self.steady_windows.get(series_name)
        if windows is None:
            return series
        bounds = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
        # +1 where a window opens, -1 just after it closes: a sample is kept where the running sum is positive.
        opens = np.searchsorted(series.time_s, bounds[:, 0], side="left")
        closes = np.searchsorted(series.time_s, bounds[:, 1], side="right")
        depth = np.zeros(len(series) + 1, dtype=np.int64)
        np.add.at(depth, opens, 1)
        np.add.at(depth, closes, -1)
        keep = np.cumsum(depth[:-1]) > 0
        return Series(series.time_s[keep], series.values[keep])

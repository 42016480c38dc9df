"""What telemetry may hold: batch sizes, a time window, non-negative counts, and a cap on metric names per node.

Checked item by item before anything is stored, so that a refused item costs nothing but itself (see
docs/security.md for the rule).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from soak.config import Settings

# Metric names whose values count or measure an amount: a negative one is a wrapped counter or a broken agent.
NON_NEGATIVE_SUFFIXES = ("_total", "_count", "_errors", "_bytes", "_j", "_replays")


def negative_problem(metric: str, value: float) -> str | None:
    """Why a value cannot be stored for its metric, when it is negative and the metric counts."""
    if value < 0 and metric.endswith(NON_NEGATIVE_SUFFIXES):
        return f"{value:g} is negative, but {metric} counts (names ending {', '.join(NON_NEGATIVE_SUFFIXES)})"
    return None


@dataclass
class IngestGuard:
    """The controller's ingest limits, and the metric names each node has sent since the controller started."""

    max_batch_samples: int
    max_batch_events: int
    max_request_batches: int
    max_metrics_per_node: int
    max_age_s: float
    max_ahead_s: float
    _names: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestGuard:
        """The limits SOAK_MAX_* configure."""
        return cls(
            max_batch_samples=settings.max_batch_samples,
            max_batch_events=settings.max_batch_events,
            max_request_batches=settings.max_request_batches,
            max_metrics_per_node=settings.max_metrics_per_node,
            max_age_s=settings.max_sample_age_s,
            max_ahead_s=settings.max_clock_ahead_s,
        )

    def count_problems(self, *, samples: int, events: int, holder: str = "batch") -> list[str]:
        """Why a batch (or a request, over all its batches) is too large to take at all (each line names its field)."""
        fix = "send smaller batches" if holder == "batch" else "send fewer batches per request"
        problems = []
        if samples > self.max_batch_samples:
            problems.append(
                f"samples: {samples} items; a {holder} holds at most {self.max_batch_samples} "
                f"(SOAK_MAX_BATCH_SAMPLES): {fix}"
            )
        if events > self.max_batch_events:
            problems.append(
                f"events: {events} items; a {holder} holds at most {self.max_batch_events} "
                f"(SOAK_MAX_BATCH_EVENTS): {fix}"
            )
        return problems

    def request_problems(self, *, batches: int) -> list[str]:
        """Why a request carries too many batches to take any (its items count against the batch limits too)."""
        if batches > self.max_request_batches:
            return [
                f"batches: {batches} batches; a request holds at most {self.max_request_batches} "
                "(SOAK_MAX_REQUEST_BATCHES): send fewer per request"
            ]
        return []

    def time_problem(self, time_s: float, now_s: float) -> str | None:
        """Why a time is outside what the controller accepts: a wrong clock, or milliseconds given as seconds."""
        if time_s > now_s + self.max_ahead_s:
            return (
                f"{time_s:.3f} is {time_s - now_s:.0f} s ahead of the controller's clock (at most "
                f"{self.max_ahead_s:g} s, SOAK_MAX_CLOCK_AHEAD_S): check the node's clock, and give epoch seconds"
            )
        if time_s < now_s - self.max_age_s:
            return (
                f"{time_s:.3f} is {now_s - time_s:.0f} s old (at most {self.max_age_s:g} s, SOAK_MAX_SAMPLE_AGE_S); "
                "import older telemetry with `soak import`"
            )
        return None

    def metric_problems(self, node: str, metrics: set[str]) -> dict[str, str]:
        """The metric names a node may not add (past its cap, so that no token grows the series without end)."""
        refused: dict[str, str] = {}
        with self._lock:
            names = self._names.setdefault(node, set())
            for metric in sorted(metrics - names):
                if len(names) >= self.max_metrics_per_node:
                    refused[metric] = (
                        f"{metric!r} would be a new metric name of node {node!r}, which already sends "
                        f"{len(names)}, the most allowed (SOAK_MAX_METRICS_PER_NODE)"
                    )
                else:
                    names.add(metric)
        return refused

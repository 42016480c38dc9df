"""Liveness detector: a hung worker, a worker that keeps crashing, and a node that stops reporting."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from soak.analysis.series import Detection, format_utc
from soak.analysis.telemetry import DeviceTelemetry

FloatArray = npt.NDArray[np.float64]

WORKER_HEARTBEAT = "worker.busy_ratio"
# Series the node agent samples itself: they keep arriving while the worker is stuck.
AGENT_PREFIX = "device."
# The runner replaces a worker that died or hung: each such event is one restart.
RESTART_KINDS = frozenset({"worker_died", "worker_hang"})
# A worker that died or gave up is not hung, and a node that went quiet silences its worker too.
STALL_EXPLAINED_BY = frozenset({"worker_died", "worker_crash_loop", "node_lost"})
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_MINUTE = 60.0
# Silence shorter than this many sample intervals is the jitter of the agent's loop and of its pushes.
MIN_SILENT_INTERVALS = 3.0


class LivenessLimits(BaseModel):
    """When a silent worker is hung, a restarting one crash-loops, and a silent node is lost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Thirty intervals is the runner's own hang timeout at 1 Hz (SOAK_HANG_TIMEOUT_S = 30 s): a worker on a busy
    # host may report a few seconds late without being hung.
    hang_intervals: int = Field(
        default=30,
        ge=2,
        le=100_000,
        description="heartbeat intervals without progress, while the device still reports, that make a hang",
    )
    max_restarts_per_hour: int = Field(
        default=3,
        ge=0,
        le=100_000,
        description="worker restarts tolerated in any hour before a crash-loop finding",
    )
    node_lost_after_s: float = Field(
        default=120.0,
        gt=0.0,
        le=7 * 86400.0,
        description="seconds without any telemetry from the device after which its node counts as lost",
    )


@dataclass(frozen=True)
class _Outage:
    """A stretch without heartbeats (or without any telemetry): when it began, was flagged and ended."""

    start_s: float
    detected_s: float
    end_s: float
    resumed: bool


def detect_liveness(telemetry: DeviceTelemetry, limits: LivenessLimits) -> list[Detection]:
    """Findings on worker hangs, crash loops and a lost node, each flagged when its rule first held."""
    silences = _node_silences(telemetry, limits)
    found = [_hang(telemetry, limits, silences), _crash_loop(telemetry, limits), _node_lost(telemetry, silences)]
    return [detection for detection in found if detection is not None]


def _event_times(telemetry: DeviceTelemetry, kinds: Iterable[str]) -> FloatArray:
    wanted = set(kinds)
    return np.sort(
        np.asarray(
            [event.time_s for event in telemetry.events if event.kind in wanted and event.time_s <= telemetry.end_s],
            dtype=np.float64,
        )
    )


def _until(times_s: FloatArray, end_s: float) -> FloatArray:
    """The sorted times up to end_s, as a view."""
    return times_s[: int(np.searchsorted(times_s, end_s, side="right"))]


def _any_within(times_s: FloatArray, start_s: FloatArray, end_s: FloatArray) -> npt.NDArray[np.bool_]:
    """Whether any of the sorted times falls inside each (start, end] interval."""
    inside: npt.NDArray[np.bool_] = np.searchsorted(times_s, end_s, side="right") > np.searchsorted(
        times_s, start_s, side="right"
    )
    return inside


def _stalls(telemetry: DeviceTelemetry, limits: LivenessLimits, silences: list[_Outage]) -> tuple[list[_Outage], float]:
    """Heartbeat gaps longer than hang_intervals while the agent kept reporting, and the gap allowed (s)."""
    beats_s = telemetry.metric(WORKER_HEARTBEAT).time_s
    beats_s = _until(beats_s, telemetry.end_s)
    if not beats_s.size:
        return [], 0.0
    # A worker may report less often than the agent samples: its own cadence sets what counts as silence.
    cadence_s = float(np.median(np.diff(beats_s))) if beats_s.size > 1 else 0.0
    allowed_s = limits.hang_intervals * max(telemetry.sample_interval_s, cadence_s)
    next_beat_s = np.append(beats_s[1:], np.inf)
    # Silence before warm-up ends is the worker starting up; after a node outage the worker gets its allowance
    # again from the node's return.
    from_s = np.maximum(beats_s, telemetry.warmup_end_s)
    for silence in silences:
        silenced = (from_s < silence.end_s) & (next_beat_s > silence.start_s) & (silence.start_s <= from_s + allowed_s)
        from_s = np.where(silenced, np.maximum(from_s, silence.end_s), from_s)
    due_s = from_s + allowed_s
    candidate = (due_s < np.minimum(next_beat_s, telemetry.end_s)) & _within_a_run(telemetry, from_s, due_s)
    explained = _any_within(_event_times(telemetry, STALL_EXPLAINED_BY), beats_s, np.minimum(next_beat_s, due_s))
    chosen = np.flatnonzero(candidate & ~explained)
    if not chosen.size:
        return [], allowed_s
    # The rule holds once a sample of the agent arrives after the heartbeat was due: the node is alive.
    agent_seen_s = np.full(chosen.size, np.inf)
    for name in telemetry.metrics_with_prefix(AGENT_PREFIX):
        times_s = telemetry.metric(name).time_s
        index = np.searchsorted(times_s, due_s[chosen], side="left")
        seen = np.where(index < times_s.size, times_s[np.minimum(index, times_s.size - 1)], np.inf)
        agent_seen_s = np.minimum(agent_seen_s, seen)
    stalls = []
    for position, seen_s in zip(chosen, agent_seen_s, strict=True):
        resumed = bool(np.isfinite(next_beat_s[position]))
        end_s = float(next_beat_s[position]) if resumed else telemetry.end_s
        # A node outage later in the stall ends what can be said about the worker.
        end_s = min([end_s] + [silence.start_s for silence in silences if seen_s <= silence.start_s < end_s])
        if seen_s < end_s and seen_s <= telemetry.end_s:
            stalls.append(_Outage(float(from_s[position]), float(seen_s), end_s, resumed))
    return stalls, allowed_s


def _within_a_run(telemetry: DeviceTelemetry, from_s: FloatArray, due_s: FloatArray) -> npt.NDArray[np.bool_]:
    """Whether each silence lies inside one workload run: between slots, and while paused, a worker is idle."""
    windows = sorted(window for runs in telemetry.steady_windows.values() for window in runs)
    if not windows:
        return np.ones(from_s.shape, dtype=bool)
    starts_s = np.array([start_s for start_s, _ in windows])
    ends_s = np.array([end_s for _, end_s in windows])
    run = np.searchsorted(starts_s, from_s, side="right") - 1
    return (run >= 0) & (ends_s[np.maximum(run, 0)] >= due_s)


def _hang(telemetry: DeviceTelemetry, limits: LivenessLimits, silences: list[_Outage]) -> Detection | None:
    stalls, allowed_s = _stalls(telemetry, limits, silences)
    hang_events_s = _event_times(telemetry, {"worker_hang"})
    if not stalls and not hang_events_s.size:
        return None
    starts = [stall.start_s for stall in stalls] + hang_events_s.tolist()
    detected = [stall.detected_s for stall in stalls] + hang_events_s.tolist()
    ends = [stall.end_s for stall in stalls] + hang_events_s.tolist()
    onset_s, last_seen_s = min(starts), max(ends)
    parts = []
    evidence: dict[str, float | int | str] = {"first_s": onset_s, "last_s": last_seen_s}
    if stalls:
        longest = max(stalls, key=lambda stall: stall.end_s - stall.start_s)
        longest_s = longest.end_s - longest.start_s
        state = "now silent" if not stalls[-1].resumed else "it resumed each time"
        parts.append(
            f"the worker's heartbeat stopped {_times(len(stalls))} while the device kept reporting, longest "
            f"{_duration(longest_s)} from {format_utc(longest.start_s)} (limit {limits.hang_intervals} heartbeat "
            f"intervals = {_duration(allowed_s)}; {state})"
        )
        evidence |= {"stalls": len(stalls), "longest_stall_s": longest_s, "allowed_silence_s": allowed_s}
    if hang_events_s.size:
        parts.append(f"the runner found it hung {_times(int(hang_events_s.size))} and restarted it")
        evidence["hang_events"] = int(hang_events_s.size)
    return Detection(
        device=telemetry.device,
        kind="worker_hang",
        subject="worker",
        severity="warning",
        onset_s=onset_s,
        detected_s=min(detected),
        last_seen_s=last_seen_s,
        explanation=(
            f"Worker hang since {format_utc(onset_s)}: {'; '.join(parts)}; look at the workload's last log lines "
            "and run a diagnostic on the device."
        ),
        evidence=evidence,
    )


def _crash_loop(telemetry: DeviceTelemetry, limits: LivenessLimits) -> Detection | None:
    restarts_s = _event_times(telemetry, RESTART_KINDS)
    gave_up_s = _event_times(telemetry, {"worker_crash_loop"})
    in_hour = np.arange(restarts_s.size) - np.searchsorted(restarts_s, restarts_s - SECONDS_PER_HOUR, side="right") + 1
    over = np.flatnonzero(in_hour > limits.max_restarts_per_hour)
    if not over.size and not gave_up_s.size:
        return None
    # The runner's own crash-loop verdict counts at once; otherwise the restart that crossed the hourly limit.
    candidates = ([float(restarts_s[over[0]])] if over.size else []) + ([float(gave_up_s[0])] if gave_up_s.size else [])
    detected_s = min(candidates)
    hour_start = int(np.searchsorted(restarts_s, detected_s - SECONDS_PER_HOUR, side="right"))
    onset_s = float(restarts_s[hour_start]) if hour_start < restarts_s.size else detected_s
    last_seen_s = float(max(restarts_s.max(initial=detected_s), gave_up_s.max(initial=detected_s)))
    peak = int(in_hour.max(initial=0))
    died = int(_event_times(telemetry, {"worker_died"}).size)
    hung = int(_event_times(telemetry, {"worker_hang"}).size)
    gave_up = f"; the runner stopped restarting it at {format_utc(float(gave_up_s[0]))}" if gave_up_s.size else ""
    return Detection(
        device=telemetry.device,
        kind="crash_loop",
        subject="worker",
        severity="critical",
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=last_seen_s,
        explanation=(
            f"The worker keeps failing: up to {peak} restarts within an hour from {format_utc(onset_s)} (limit "
            f"{limits.max_restarts_per_hour} per hour; {int(restarts_s.size)} in all: {died} died, {hung} hung)"
            f"{gave_up}: read the worker's errors and run a diagnostic on the device before it rejoins."
        ),
        evidence={
            "restarts": int(restarts_s.size),
            "max_restarts_in_hour": peak,
            "max_restarts_per_hour": limits.max_restarts_per_hour,
            "died": died,
            "hung": hung,
            "gave_up": "yes" if gave_up_s.size else "no",
            "first_s": onset_s,
            "last_s": last_seen_s,
        },
    )


def _intersect(a: tuple[FloatArray, FloatArray], b: tuple[FloatArray, FloatArray]) -> tuple[FloatArray, FloatArray]:
    """The overlaps of two sorted lists of disjoint (start, end) intervals."""
    (a_start, a_end), (b_start, b_end) = a, b
    first = np.searchsorted(b_end, a_start, side="right")
    last = np.searchsorted(b_start, a_end, side="left")
    counts = np.maximum(last - first, 0)
    a_index = np.repeat(np.arange(a_start.size), counts)
    b_index = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(first, counts)
    start = np.maximum(a_start[a_index], b_start[b_index])
    end = np.minimum(a_end[a_index], b_end[b_index])
    keep = end > start
    return start[keep], end[keep]


def _node_silences(telemetry: DeviceTelemetry, limits: LivenessLimits) -> list[_Outage]:
    """Stretches longer than node_lost_after_s in which no series of the device got a sample."""
    threshold_s = max(limits.node_lost_after_s, MIN_SILENT_INTERVALS * telemetry.sample_interval_s)
    quiet: tuple[FloatArray, FloatArray] | None = None
    for series in telemetry.series.values():
        times_s = _until(series.time_s, telemetry.end_s)
        if not times_s.size:
            continue
        bounds = np.concatenate(([telemetry.start_s], times_s, [telemetry.end_s]))
        wide = np.flatnonzero(np.diff(bounds) > threshold_s)
        own = (bounds[wide], bounds[wide + 1])
        quiet = own if quiet is None else _intersect(quiet, own)
        if not quiet[0].size:
            return []
    if quiet is None:
        return []
    # Silence before warm-up ends is the campaign starting.
    start_s = np.maximum(quiet[0], telemetry.warmup_end_s)
    long_enough = quiet[1] - start_s > threshold_s
    # An agent that reported dropping telemetry was alive through the gap.
    dropped = _any_within(_event_times(telemetry, {"telemetry_dropped"}), start_s, quiet[1])
    keep = long_enough & ~dropped
    return [
        _Outage(float(start), float(start) + threshold_s, float(end), bool(end < telemetry.end_s))
        for start, end in zip(start_s[keep], quiet[1][keep], strict=True)
    ]


def _node_lost(telemetry: DeviceTelemetry, silences: list[_Outage]) -> Detection | None:
    lost_s = _event_times(telemetry, {"node_lost"})
    outages = list(silences)
    # A node that left the Ray cluster until it returned, and one the campaign waited for until it joined late
    # (or never did): either way its devices were out of the campaign for that while.
    for gone, back in (("node_lost", "node_returned"), ("node_waiting", "node_joined")):
        back_s = _event_times(telemetry, {back})
        for time_s in _event_times(telemetry, {gone}):
            later = back_s[back_s > time_s]
            end_s = float(later[0]) if later.size else telemetry.end_s
            outages.append(_Outage(float(time_s), float(time_s), end_s, bool(later.size)))
    if not outages:
        return None
    outages.sort(key=lambda outage: outage.start_s)
    longest = max(outages, key=lambda outage: outage.end_s - outage.start_s)
    latest = max(outages, key=lambda outage: outage.end_s)
    # A node_lost event and the silence it caused are one outage, not two.
    episodes = sum(1 for _ in _merged(outages))
    came_back = latest.resumed
    status = (
        f"it came back at {format_utc(latest.end_s)}"
        if came_back
        else f"it has not come back as of {format_utc(telemetry.end_s)}"
    )
    longest_s = longest.end_s - longest.start_s
    return Detection(
        device=telemetry.device,
        kind="node_lost",
        subject=telemetry.node,
        severity="warning",
        onset_s=outages[0].start_s,
        detected_s=min(outage.detected_s for outage in outages),
        last_seen_s=latest.end_s,
        explanation=(
            f"Node {telemetry.node} went silent or out of the Ray cluster {_times(episodes)} from "
            f"{format_utc(outages[0].start_s)}, longest {_duration(longest_s)} from {format_utc(longest.start_s)}; "
            f"{status}: check the node's power, network, kernel log and `ray status`."
        ),
        evidence={
            "outages": episodes,
            "longest_silence_s": longest_s,
            "came_back": "yes" if came_back else "no",
            "node_lost_events": int(lost_s.size),
            "node_waiting_events": int(_event_times(telemetry, {"node_waiting"}).size),
            "first_s": outages[0].start_s,
            "last_s": latest.end_s,
        },
    )


def _merged(outages: list[_Outage]) -> Iterable[tuple[float, float]]:
    """Overlapping outages (sorted by start) as one stretch each."""
    current: tuple[float, float] | None = None
    for outage in outages:
        if current is not None and outage.start_s <= current[1]:
            current = (current[0], max(current[1], outage.end_s))
            continue
        if current is not None:
            yield current
        current = (outage.start_s, outage.end_s)
    if current is not None:
        yield current


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _duration(seconds: float) -> str:
    if seconds < 2 * SECONDS_PER_MINUTE:
        return f"{seconds:.0f} s"
    if seconds < 2 * SECONDS_PER_HOUR:
        return f"{seconds / SECONDS_PER_MINUTE:.0f} min"
    return f"{seconds / SECONDS_PER_HOUR:.1f} h"

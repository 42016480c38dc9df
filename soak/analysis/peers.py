"""Fleet-peer detector: a device persistently slower than the identical devices running the same workload.

A device compared with its own baseline cannot show that it was slow from the start; compared block by block
with identical peers (same vendor and model, same throughput series) it can, and whatever moves the whole fleet
at once (the diurnal cycle, a shared filesystem's hiccup) cancels out. Each block of the shared grid is judged
by the device's ratio to the group's median and its robust z-score (median and MAD across the group); a block
counts against the device when, over a trailing window of `peer_sustained_s`, the medians of both say so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soak.analysis.drift import (
    CRITICAL_RATIO_MARGIN,
    THROUGHPUT_PREFIX,
    BlockMeans,
    DriftLimits,
    steady_block_means,
)
from soak.analysis.series import Detection, capitalised, format_utc
from soak.analysis.telemetry import DeviceTelemetry

FloatArray = npt.NDArray[np.float64]

# The median absolute deviation times this estimates the standard deviation of normal data.
MAD_TO_SD = 1.4826
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class _Group:
    """The block means of identical devices on one series, one row per device and one column per grid block."""

    vendor: str
    model: str
    series_name: str
    members: list[DeviceTelemetry]
    columns: npt.NDArray[np.int64]
    mean: FloatArray
    first_sample_s: FloatArray
    last_sample_s: FloatArray


def detect_slow_peers(fleet: Sequence[DeviceTelemetry], limits: DriftLimits) -> list[Detection]:
    """Find devices whose throughput stays below that of their identical peers on the same workload."""
    groups: defaultdict[tuple[str, str, str], list[DeviceTelemetry]] = defaultdict(list)
    for telemetry in fleet:
        for metric in telemetry.metrics_with_prefix(THROUGHPUT_PREFIX):
            groups[(telemetry.vendor, telemetry.model, metric.removeprefix(THROUGHPUT_PREFIX))].append(telemetry)
    detections: list[Detection] = []
    for (vendor, model, series_name), members in sorted(groups.items()):
        if len(members) < limits.min_peers + 1:
            continue
        group = _group(vendor, model, series_name, members, limits.block_s)
        detections.extend(_slow_members(group, limits))
    return detections


def _group(vendor: str, model: str, series_name: str, members: list[DeviceTelemetry], block_s: float) -> _Group:
    """Align every member's block means on the grid blocks that any member has."""
    blocks: list[BlockMeans] = [steady_block_means(telemetry, series_name, block_s) for telemetry in members]
    columns = np.unique(np.concatenate([member.index for member in blocks]))
    shape = (len(members), columns.size)
    mean, first_sample_s, last_sample_s = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for row, member in enumerate(blocks):
        position = np.searchsorted(columns, member.index)
        mean[row, position] = member.mean
        first_sample_s[row, position] = member.first_sample_s
        last_sample_s[row, position] = member.last_sample_s
    return _Group(vendor, model, series_name, members, columns, mean, first_sample_s, last_sample_s)


def _column_median(values: FloatArray, counts: npt.NDArray[np.int64]) -> FloatArray:
    """Median of each column over its finite entries (NaN where a column has none)."""
    # np.sort puts NaN last, so each column's finite values lead; far faster than nanmedian on short columns.
    ordered = np.sort(values, axis=0)
    columns = np.arange(values.shape[1])
    low = ordered[np.maximum((counts - 1) // 2, 0), columns]
    high = ordered[counts // 2, columns]
    return np.where(counts > 0, 0.5 * (low + high), np.nan)


def _slow_members(group: _Group, limits: DriftLimits) -> list[Detection]:
    mean = group.mean
    counts = np.sum(np.isfinite(mean), axis=0)
    # The device itself stays in its group's median and MAD: one slow device moves neither by more than one
    # order statistic among min_peers + 1 or more, and only towards itself, so it can only make the test milder.
    median = _column_median(mean, counts)
    spread = MAD_TO_SD * _column_median(np.abs(mean - median), counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / median
        z_score = (mean - median) / spread
    comparable = np.isfinite(mean) & (counts >= limits.min_peers + 1) & (median > 0.0)
    window_blocks = math.ceil(limits.peer_sustained_s / limits.block_s - 1e-9)
    # A block is judged once every member's samples in it are in: at its end on the grid.
    block_end_s = (group.columns + 1) * limits.block_s

    detections: list[Detection] = []
    for row, telemetry in enumerate(group.members):
        compared = np.flatnonzero(comparable[row])
        if compared.size < window_blocks:
            continue
        # Judged on the medians of a trailing window of compared blocks: the MAD of a handful of peers is
        # itself noisy from block to block, and one lucky block must not break a slow stretch in two.
        window_ratio = np.median(_trailing(ratio[row, compared], window_blocks), axis=1)
        window_z = np.median(_trailing(z_score[row, compared], window_blocks), axis=1)
        slow_windows = np.flatnonzero(
            (window_ratio <= 1.0 - limits.min_detectable_drop) & (window_z <= -limits.peer_z_limit)
        )
        if not slow_windows.size:
            continue
        # Window w covers compared blocks w .. w + window_blocks - 1.
        covered = np.zeros(compared.size, dtype=bool)
        for first in slow_windows.tolist():
            covered[first : first + window_blocks] = True
        slow_blocks = compared[covered]
        last_window_end = int(slow_windows[-1]) + window_blocks - 1
        # The medians turn once half the window is slow; the slowdown began at the window's first slow block.
        first_window = ratio[row, compared[slow_windows[0] : slow_windows[0] + window_blocks]]
        onset = compared[slow_windows[0] + int(np.argmax(first_window <= 1.0 - limits.min_detectable_drop))]
        detections.append(
            _detection(
                telemetry,
                group,
                limits,
                onset_s=float(group.first_sample_s[row, onset]),
                detected_s=float(block_end_s[compared[slow_windows[0] + window_blocks - 1]]),
                last_seen_s=float(group.last_sample_s[row, compared[last_window_end]]),
                # Back in line for a whole window: a single quick block is not a recovery.
                recovered=bool(compared.size - 1 - last_window_end >= window_blocks),
                ratio=float(np.median(ratio[row, slow_blocks])),
                z_score=float(np.median(z_score[row, slow_blocks])),
                level=float(np.median(mean[row, slow_blocks])),
                peer_level=float(np.median(median[slow_blocks])),
                group_size=int(np.median(counts[slow_blocks])),
                slow_hours=slow_blocks.size * limits.block_s / SECONDS_PER_HOUR,
                compared_hours=compared.size * limits.block_s / SECONDS_PER_HOUR,
            )
        )
    return detections


def _trailing(values: FloatArray, window: int) -> FloatArray:
    """Every run of `window` consecutive values, one per row."""
    return np.lib.stride_tricks.sliding_window_view(values, window)


def _detection(
    telemetry: DeviceTelemetry,
    group: _Group,
    limits: DriftLimits,
    *,
    onset_s: float,
    detected_s: float,
    last_seen_s: float,
    recovered: bool,
    ratio: float,
    z_score: float,
    level: float,
    peer_level: float,
    group_size: int,
    slow_hours: float,
    compared_hours: float,
) -> Detection:
    critical = ratio < limits.min_sustained_throughput_ratio - CRITICAL_RATIO_MARGIN
    devices = f"{group_size} identical {group.vendor} {group.model} devices"
    figures = f"robust z {z_score:.1f}; {level:.4g} vs {peer_level:.4g} per s"
    name = capitalised(group.series_name)
    when = (
        f"from {format_utc(onset_s)} until {format_utc(last_seen_s)}" if recovered else f"since {format_utc(onset_s)}"
    )
    verb = "ran" if recovered else "runs"
    explanation = (
        f"{name} throughput {verb} at {ratio * 100:.1f} % of the median of the {devices} running it ({figures}) "
        f"{when}, slow for {slow_hours:.1f} h of {compared_hours:.1f} h compared; "
        f"acceptance limit {limits.min_sustained_throughput_ratio * 100:.0f} %."
    )
    return Detection(
        device=telemetry.device,
        kind="slow_peer",
        subject=THROUGHPUT_PREFIX + group.series_name,
        severity="critical" if critical else "warning",
        onset_s=onset_s,
        detected_s=detected_s,
        last_seen_s=last_seen_s,
        explanation=explanation,
        evidence={
            "ratio_to_peer_median": ratio,
            "robust_z": z_score,
            "level": level,
            "peer_median_level": peer_level,
            "group_size": group_size,
            "vendor": group.vendor,
            "model": group.model,
            "slow_hours": slow_hours,
            "compared_hours": compared_hours,
            "recovered": "yes" if recovered else "no",
            "peer_z_limit": limits.peer_z_limit,
            "min_detectable_drop": limits.min_detectable_drop,
            "min_sustained_throughput_ratio": limits.min_sustained_throughput_ratio,
            "peer_sustained_s": limits.peer_sustained_s,
            "block_s": limits.block_s,
        },
    )

"""The report's figures, drawn with matplotlib (Agg) into PNGs, with axes and units.

In a fleet of more than eight devices only those with a warning or critical finding are drawn in colour and named
in the legend; the others are thin grey lines, so that a fleet of dozens stays readable.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from soak.report.figures import MIB, device_memory_metric, leak_rate_mib_per_hour
from soak.report.model import DeviceFigures, FindingEntry, Plot
from soak.report.store import CampaignData

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 3.4, 100
GREY = "#b0b0b0"
# A fleet this small has every device named in colour; a larger one only those with a warning or critical finding.
MAX_NAMED_DEVICES = 8
SEVERITY_COLOURS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
THROTTLE_COLOURS = ["#ef6c00", "#c62828", "#6a1b9a", "#1565c0", "#2e7d32", "#795548", "#00838f", "#9e9e9e"]


def _figure(rows: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure of its own, outside pyplot: no global state, safe in the API's worker threads, freed with it."""
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN * rows), dpi=DPI)
    axes = figure.subplots(rows, 1, squeeze=False)
    return figure, [row[0] for row in axes]


def _png(figure: Figure) -> str:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def _time_unit(data: CampaignData) -> tuple[float, str]:
    """Seconds per unit of the time axis, and its name: minutes for a demo, days for weeks, else hours."""
    span_s = data.end_s - data.start_s
    if span_s < 2 * 3600:
        return 60.0, "minutes"
    if span_s > 7 * 86400:
        return 86400.0, "days"
    return 3600.0, "hours"


def _x(data: CampaignData, time_s: np.ndarray | list[float]) -> np.ndarray:
    """Epoch seconds as time since the campaign's start, in the axis unit."""
    return (np.asarray(time_s, dtype=np.float64) - data.start_s) / _time_unit(data)[0]


def _broken_at_gaps(
    x: np.ndarray, y: np.ndarray, time_s: np.ndarray, max_gap_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The line with a break wherever no step was recorded for longer than max_gap_s (another workload's slot, a
    restart), so that a gap is not drawn as a straight line across it."""
    cuts = np.flatnonzero(np.diff(time_s) > max_gap_s) + 1
    return np.insert(x, cuts, np.nan), np.insert(y, cuts, np.nan)


def _flagged(findings: list[FindingEntry]) -> set[str]:
    return {f.device for f in findings if f.device is not None and f.severity in ("critical", "warning")}


def _draw_devices(
    axes: Axes,
    data: CampaignData,
    metric: str | Callable[[str], str],
    flagged: set[str],
    scale: float = 1.0,
    only: set[str] | None = None,
) -> int:
    """Plot one metric (or each device's own metric, named by a function of the device) of every device, or of the
    devices named in only; how many devices had it."""
    drawn, grey_labelled = 0, False
    for device, _ in data.devices:
        if only is not None and device.name not in only:
            continue
        curve = data.curve(device.name, metric if isinstance(metric, str) else metric(device.name))
        if len(curve) == 0:
            continue
        drawn += 1
        x, y = _broken_at_gaps(_x(data, curve.time_s), curve.mean * scale, curve.time_s, 2.0 * data.step_s)
        if device.name in flagged or len(data.devices) <= MAX_NAMED_DEVICES:
            axes.plot(x, y, linewidth=1.4, label=device.name)
        else:
            axes.plot(
                x,
                y,
                color=GREY,
                linewidth=0.7,
                label=None if grey_labelled else "devices without findings",
            )
            grey_labelled = True
    return drawn


def _finish(axes: Axes, data: CampaignData, ylabel: str, title: str) -> None:
    axes.set_xlabel(f"{_time_unit(data)[1]} since campaign start")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="best", ncol=2)


def throughput_plot(data: CampaignData, figures: list[DeviceFigures], flagged: set[str]) -> Plot | None:
    """Throughput per workload and kind of device over time, with that group's baseline band."""
    groups: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for device in figures:
        for t in device.throughput:
            groups.setdefault((t.workload, t.unit, device.vendor, device.model), {})[device.device] = t.sustained
    if not groups:
        return None
    ratio = data.plan.acceptance.throughput.min_sustained_throughput_ratio
    figure, axes_list = _figure(len(groups))
    for axes, ((workload, unit, vendor, model), sustained) in zip(axes_list, sorted(groups.items()), strict=True):
        _draw_devices(axes, data, f"throughput.{workload}", flagged, only=set(sustained))
        baseline = float(np.median(list(sustained.values())))
        axes.axhspan(baseline * ratio, baseline, color="#2e7d32", alpha=0.12, label=f"baseline band ({ratio:.0%})")
        axes.axhline(baseline, color="#2e7d32", linewidth=0.8)
        _finish(axes, data, unit, f"{workload} on {vendor} {model}: throughput per device")
    png = _png(figure)
    return Plot(
        key="throughput",
        title="Throughput over time",
        caption=(
            f"Step means every {data.step_s:g} s, one panel per workload and kind of device. Green band: from the "
            f"median sustained throughput of those devices down to {ratio:.0%} of it (the plan's "
            "min_sustained_throughput_ratio)."
        ),
        png_base64=png,
    )


def memory_plot(data: CampaignData, figures: list[DeviceFigures], findings: list[FindingEntry]) -> Plot | None:
    """Device memory and host RSS of each worker, with the fitted trend of each device a leak finding names."""

    def device_memory(device: str) -> str:
        return device_memory_metric(data, device)

    def host_memory(_: str) -> str:
        return "process.rss_bytes"

    panels: list[tuple[Callable[[str], str], str, str]] = [
        (device_memory, "device memory (MiB)", "Device memory: the worker's allocation, else in use on the device"),
        (host_memory, "worker resident memory (MiB)", "Host memory (RSS) of the worker"),
    ]
    panels = [panel for panel in panels if any(data.summary(d.name, panel[0](d.name)) for d, _ in data.devices)]
    if not panels:
        return None
    leaking = {(f.device, f.subject) for f in findings if f.kind == "memory_leak" and f.device is not None}
    figure, axes_list = _figure(len(panels))
    for axes, (metric_of, ylabel, title) in zip(axes_list, panels, strict=True):
        flagged = {device for device, subject in leaking if subject == metric_of(device)}
        _draw_devices(axes, data, metric_of, flagged, 1.0 / MIB)
        for device in figures:
            curve = data.curve(device.device, metric_of(device.device)).after(data.warmup_end_s)
            rate = leak_rate_mib_per_hour(curve)
            if device.device not in flagged or rate is None:
                continue
            hours = (curve.time_s - data.start_s) / 3600.0
            level = float(np.median(curve.mean / MIB - rate * hours))
            trend = level + rate * hours
            x = _x(data, curve.time_s)
            axes.plot(x, trend, color="black", linestyle="--", linewidth=1.2)
            axes.annotate(f"{device.device}: {rate:+.3g} MiB/h", (x[-1], trend[-1]), fontsize=7)
        _finish(axes, data, ylabel, title)
    png = _png(figure)
    return Plot(
        key="memory",
        title="Memory with fitted leak trend",
        caption=(
            "Coloured: devices with a memory-leak finding on that series; dashed: their Theil–Sen trend after warm-up "
            "over the whole campaign (the detector judges trailing windows, so its rate can be steeper)."
        ),
        png_base64=png,
    )


def thermal_power_plot(data: CampaignData, flagged: set[str]) -> Plot | None:
    """Temperature against the slowdown threshold, and power against its limit."""
    figure, (temperature_axes, power_axes) = _figure(2)
    drawn = _draw_devices(temperature_axes, data, "device.temperature_c", flagged)
    drawn += _draw_devices(power_axes, data, "device.power_w", flagged)
    if drawn == 0:
        return None
    slowdown = [s.mean for d, _ in data.devices if (s := data.summary(d.name, "device.temperature_slowdown_c"))]
    if slowdown:
        threshold = float(np.median(slowdown))
        margin = data.plan.acceptance.thermal.min_temperature_margin_c
        temperature_axes.axhline(threshold, color="#c62828", linewidth=1.0, label=f"slowdown {threshold:g} °C")
        temperature_axes.axhline(
            threshold - margin, color="#ef6c00", linestyle="--", linewidth=1.0, label=f"margin {margin:g} °C"
        )
    limits = [s.mean for d, _ in data.devices if (s := data.summary(d.name, "device.power_limit_w"))]
    if limits:
        power_axes.axhline(float(np.median(limits)), color="#c62828", linewidth=1.0, label="power limit")
    _finish(temperature_axes, data, "temperature (°C)", "Temperature")
    _finish(power_axes, data, "board power (W)", "Power")
    png = _png(figure)
    return Plot(
        key="thermal_power",
        title="Temperature and power",
        caption="Red: the device's slowdown temperature and power limit; dashed: the plan's minimum margin.",
        png_base64=png,
    )


def throttle_plot(figures: list[DeviceFigures]) -> Plot | None:
    """Share of time each throttle reason held, per device."""
    reasons = sorted({reason for device in figures for reason in device.throttle_residency})
    if not reasons:
        return None
    figure, (axes,) = _figure()
    names = [device.device for device in figures]
    left = np.zeros(len(names))
    for index, reason in enumerate(reasons):
        shares = np.array([100.0 * device.throttle_residency.get(reason, 0.0) for device in figures])
        axes.barh(names, shares, left=left, color=THROTTLE_COLOURS[index % len(THROTTLE_COLOURS)], label=reason)
        left += shares
    axes.set_xlim(0, max(float(np.max(left)) * 1.05, 1.0))
    axes.set_xlabel("share of campaign time (%)")
    axes.set_title("Throttle residency by reason", fontsize=10)
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(alpha=0.3, axis="x")
    axes.legend(fontsize=7, loc="best")
    figure.set_size_inches(WIDTH_IN, max(HEIGHT_IN, 0.22 * len(names) + 1.2))
    png = _png(figure)
    return Plot(
        key="throttle",
        title="Throttle residency",
        caption="Mean of each clock-event reason's 0/1 series over the campaign (power cap is a cost, not a fault).",
        png_base64=png,
    )


def error_timeline_plot(data: CampaignData, findings: list[FindingEntry]) -> Plot:
    """Events and finding onsets per device over the campaign."""
    names = [device.name for device, _ in data.devices] + ["(campaign)"]
    row = {name: index for index, name in enumerate(names)}
    names_by_id = {device.id: device.name for device, _ in data.devices}
    figure, (axes,) = _figure()
    for severity, colour in SEVERITY_COLOURS.items():
        shown = [e for e in data.events if e.severity == severity and e.kind not in ("software_stack", "op_coverage")]
        axes.scatter(
            _x(data, [e.time_s for e in shown]),
            [row[names_by_id.get(e.device_id or -1, "(campaign)")] for e in shown],
            color=colour,
            marker="o",
            s=12,
            label=f"{severity} events ({len(shown)})",
        )
        onsets = [f for f in findings if f.severity == severity]
        axes.scatter(
            _x(data, [f.onset_s for f in onsets]),
            [row.get(f.device or "(campaign)", row["(campaign)"]) for f in onsets],
            color=colour,
            marker="^",
            s=40,
            edgecolors="black",
            linewidths=0.5,
            label=f"{severity} finding onsets ({len(onsets)})",
        )
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlim(0, max(float(_x(data, [data.end_s])[0]), 1e-3))
    figure.set_size_inches(WIDTH_IN, max(HEIGHT_IN, 0.22 * len(names) + 1.2))
    _finish(axes, data, "device", "Errors and findings over time")
    png = _png(figure)
    return Plot(
        key="errors",
        title="Error timeline",
        caption="Dots: stored events by severity (driver errors, restarts, SDC, ...); triangles: finding onsets.",
        png_base64=png,
    )


def scaling_plot(data: CampaignData, flagged: set[str]) -> Plot | None:
    """Scaling efficiency of the collective workloads over time."""
    metrics = sorted({m for device, _ in data.devices for m in data.metrics(device.name, "efficiency.")})
    if not metrics:
        return None
    figure, axes_list = _figure(len(metrics))
    for axes, metric in zip(axes_list, metrics, strict=True):
        _draw_devices(axes, data, metric, flagged, scale=100.0)
        _finish(axes, data, "efficiency (%)", metric)
    png = _png(figure)
    return Plot(
        key="scaling",
        title="Scaling efficiency over time",
        caption="Data-parallel throughput at n devices as a share of n times one device.",
        png_base64=png,
    )


def all_plots(
    data: CampaignData, figures: list[DeviceFigures], findings: list[FindingEntry]
) -> tuple[list[Plot], list[str]]:
    """Every plot the campaign's data allows, and the titles of those it does not (not measured)."""
    flagged = _flagged(findings)
    candidates: list[tuple[str, Plot | None]] = [
        ("Throughput over time", throughput_plot(data, figures, flagged)),
        ("Memory with fitted leak trend", memory_plot(data, figures, findings)),
        ("Temperature and power", thermal_power_plot(data, flagged)),
        ("Throttle residency", throttle_plot(figures)),
        ("Error timeline", error_timeline_plot(data, findings)),
        ("Scaling efficiency over time", scaling_plot(data, flagged)),
    ]
    plots = [plot for _, plot in candidates if plot is not None]
    return plots, [title for title, plot in candidates if plot is None]

"""The per-device table: load, throughput, memory trend, thermal, energy and errors, from the store's figures."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import stats

from soak.nodes.models import Device, Node
from soak.report.model import DeviceFigures, WorkloadThroughput
from soak.report.store import CampaignData, Curve
from soak.telemetry.models import Event
from soak.workloads.op_coverage import OpStatus
from soak.workloads.registry import load_workload

MIB = 1024.0 * 1024.0
# Burst is the level of the best steps: this percentile of the step means after warm-up.
BURST_PERCENTILE = 95.0
# Drift compares the mean of the first and of the last tenth of the steps after warm-up.
DRIFT_SHARE = 0.1
# Workloads that put no load on the device: their slots are not hours under load.
RESTING_WORKLOADS = frozenset({"idle"})
# Device memory as torch's allocator sees it, else as the vendor tool reports it (simulated and imported devices).
DEVICE_MEMORY_METRICS = ("worker.memory_allocated_bytes", "device.memory_used_bytes")
# Events after which the runner restarts the device's worker.
RESTART_EVENTS = frozenset({"worker_died", "worker_hang"})
VIOLATION_COUNTERS = {"power_cap": "device.violation_power_s", "thermal": "device.violation_thermal_s"}
WORK_UNITS = {
    "tokens/s": "token",
    "queries/s": "query",
    "probes/s": "probe",
    "checks/s": "check",
    "units/s": "unit",
    "work/s": "unit of work",
}
FLOP_UNITS_PER_TFLOP = {"GFLOP/s": 1000.0, "TFLOP/s": 1.0}


def work_unit(unit: str) -> str:
    """What one unit of work is for a throughput unit: GFLOP for GFLOP/s, token for tokens/s."""
    return WORK_UNITS.get(unit, unit.removesuffix("/s"))


def workload_unit(name: str) -> str:
    """The unit a workload's throughput is reported in ("units/s" for one this build does not know)."""
    try:
        return str(load_workload(name).unit)
    except (KeyError, LookupError, ValueError):
        return "units/s"


def device_memory_metric(data: CampaignData, device: str) -> str:
    """The device-memory series a device has: its worker's allocation (torch), else the device's memory in use."""
    return next((m for m in DEVICE_MEMORY_METRICS if data.summary(device, m) is not None), DEVICE_MEMORY_METRICS[0])


def leak_rate_mib_per_hour(curve: Curve) -> float | None:
    """Theil–Sen slope of a memory curve in MiB per hour (robust to the GC sawtooth), None with under 3 steps."""
    if len(curve) < 3:
        return None
    slope_per_s = stats.theilslopes(curve.mean / MIB, curve.time_s)[0]
    return float(slope_per_s * 3600.0)


def throughput_figures(data: CampaignData, device: str, metric: str) -> WorkloadThroughput | None:
    """Sustained, burst, variation, drift and energy per unit of one workload on one device."""
    curve = data.curve(device, metric).after(data.warmup_end_s)
    curve = Curve(curve.time_s[curve.mean > 0], curve.mean[curve.mean > 0])
    if len(curve) == 0:
        return None
    workload = metric.removeprefix("throughput.")
    unit = workload_unit(workload)
    sustained = float(np.mean(curve.mean))
    burst = float(np.percentile(curve.mean, BURST_PERCENTILE))
    edge = max(1, int(len(curve) * DRIFT_SHARE))
    drift = None
    if len(curve) >= 2 * edge + 1:
        first, last = float(np.mean(curve.mean[:edge])), float(np.mean(curve.mean[-edge:]))
        drift = 100.0 * (last - first) / first
    joules_per_unit = _joules_per_unit(data, device, curve)
    per_tflop = FLOP_UNITS_PER_TFLOP.get(unit)
    return WorkloadThroughput(
        workload=workload,
        unit=unit,
        work_unit=work_unit(unit),
        sustained=sustained,
        burst=burst,
        sustained_share_of_burst=sustained / burst if burst > 0 else 0.0,
        coefficient_of_variation=float(np.std(curve.mean) / sustained),
        drift_percent=drift,
        joules_per_unit=joules_per_unit,
        joules_per_tflop=joules_per_unit * per_tflop if joules_per_unit is not None and per_tflop else None,
    )


def _joules_per_unit(data: CampaignData, device: str, throughput: Curve) -> float | None:
    """Mean board power over the steps the workload ran, divided by its mean throughput there."""
    power = data.curve(device, "device.power_w")
    if len(power) == 0:
        return None
    common, in_power, in_throughput = np.intersect1d(power.time_s, throughput.time_s, return_indices=True)
    if common.size == 0:
        return None
    return float(np.mean(power.mean[in_power]) / np.mean(throughput.mean[in_throughput]))


def device_figures(data: CampaignData, device: Device, node: Node) -> DeviceFigures:
    """One row of the per-device table."""
    name = device.name
    loaded_s = sum(
        (run.ended_s if run.ended_s is not None else data.end_s) - run.started_s
        for run in data.runs.get(name, [])
        if run.workload not in RESTING_WORKLOADS
    )
    throughput = [
        figures
        for metric in data.metrics(name, "throughput.")
        if (figures := throughput_figures(data, name, metric)) is not None
    ]
    temperature = data.summary(name, "device.temperature_c")
    margin = _min_margin_c(data, name)
    power = data.summary(name, "device.power_w")
    energy_kwh = None
    if power is not None:
        power_curve = data.curve(name, "device.power_w")
        energy_kwh = float(np.sum(power_curve.mean) * data.step_s / 3.6e6) if len(power_curve) else None
    events = data.device_events(device.id)
    severities = Counter(event.severity for event in events if event.kind == "driver_error")
    fallback, unsupported = _op_coverage(events)
    return DeviceFigures(
        device=name,
        node=node.name,
        vendor=device.vendor,
        model=device.model,
        hours_under_load=loaded_s / 3600.0,
        throughput=throughput,
        device_memory_leak_mib_per_hour=leak_rate_mib_per_hour(
            data.curve(name, device_memory_metric(data, name)).after(data.warmup_end_s)
        ),
        host_memory_leak_mib_per_hour=leak_rate_mib_per_hour(
            data.curve(name, "process.rss_bytes").after(data.warmup_end_s)
        ),
        max_temperature_c=temperature.max if temperature is not None else None,
        min_temperature_margin_c=margin,
        mean_power_w=power.mean if power is not None else None,
        energy_kwh=energy_kwh,
        throttle_residency=_throttle_residency(data, name),
        driver_errors_by_severity=dict(sorted(severities.items())),
        sdc_events=sum(event.kind == "sdc" for event in events),
        restarts=sum(event.kind in RESTART_EVENTS for event in events),
        hangs=sum(event.kind == "worker_hang" for event in events),
        fallback_ops=fallback,
        unsupported_ops=unsupported,
    )


def _throttle_residency(data: CampaignData, device: str) -> dict[str, float]:
    """Share of time each clock-event reason held: from its 0/1 series, else from NVML's violation counters."""
    residency = {
        metric.removeprefix("device.clock_event."): summary.mean
        for metric in data.metrics(device, "device.clock_event.")
        if (summary := data.summary(device, metric)) is not None
    }
    if residency:
        return residency
    span_s = data.end_s - data.start_s
    for reason, metric in VIOLATION_COUNTERS.items():
        summary = data.summary(device, metric)
        if summary is not None and span_s > 0:
            # A counter of seconds held back: its increase over the campaign's length (a driver reload resets it).
            residency[reason] = min(max(summary.max - summary.min, 0.0) / span_s, 1.0)
    return residency


def _min_margin_c(data: CampaignData, device: str) -> float | None:
    """Smallest step-mean distance between the temperature and the slowdown threshold."""
    temperature = data.curve(device, "device.temperature_c")
    slowdown = data.curve(device, "device.temperature_slowdown_c")
    common, in_temperature, in_slowdown = np.intersect1d(temperature.time_s, slowdown.time_s, return_indices=True)
    if common.size == 0:
        return None
    return float(np.min(slowdown.mean[in_slowdown] - temperature.mean[in_temperature]))


def _op_coverage(events: list[Event]) -> tuple[list[str], list[str]]:
    """Ops the op-coverage workload saw fall back to the CPU, and ops unsupported, by their latest verdict."""
    latest: dict[str, str] = {}
    for event in events:
        if event.kind == "op_coverage":
            # The message is `<op>: <status>[: <detail>]` (soak/workloads/op_coverage.py).
            op, _, rest = event.message.partition(": ")
            latest[op] = rest.split(": ", 1)[0]
    fallback = sorted(op for op, status in latest.items() if status == OpStatus.FELL_BACK)
    unsupported = sorted(op for op, status in latest.items() if status == OpStatus.UNSUPPORTED)
    return fallback, unsupported

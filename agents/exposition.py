"""How soak's dotted metric names appear in Prometheus: base units, `_total` counters, a label per dimension.

Close in spirit to dcgm-exporter (one family per quantity, device identity in labels), in Prometheus' own naming
conventions (seconds, bytes, hertz, celsius, watts, joules). docs/metrics.md lists every family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True)
class Family:
    """One Prometheus metric family a soak metric maps to; `labels` are the ones its name encoded."""

    name: str
    kind: str  # gauge | counter
    help: str
    scale: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)


def _gauge(name: str, help_text: str, scale: float = 1.0) -> Family:
    return Family(name, "gauge", help_text, scale)


def _counter(name: str, help_text: str, scale: float = 1.0) -> Family:
    return Family(name, "counter", help_text, scale)


MHZ = 1e6
EXACT: dict[str, Family] = {
    "device.temperature_c": _gauge("soak_device_temperature_celsius", "GPU/NPU die temperature"),
    "device.memory_temperature_c": _gauge("soak_device_memory_temperature_celsius", "HBM temperature"),
    "device.temperature_slowdown_c": _gauge(
        "soak_device_slowdown_temperature_celsius", "Temperature at which the device starts to slow itself down"
    ),
    "device.temperature_shutdown_c": _gauge(
        "soak_device_shutdown_temperature_celsius", "Temperature at which the device shuts down"
    ),
    "device.power_w": _gauge("soak_device_power_watts", "Board power draw"),
    "device.power_limit_w": _gauge("soak_device_power_limit_watts", "Enforced power limit"),
    "device.energy_j": _counter("soak_device_energy_joules", "Energy consumed since the driver loaded"),
    "device.sm_clock_mhz": _gauge("soak_device_sm_clock_hertz", "SM (core) clock", MHZ),
    "device.mem_clock_mhz": _gauge("soak_device_memory_clock_hertz", "Memory clock", MHZ),
    "device.sm_clock_max_mhz": _gauge("soak_device_sm_clock_max_hertz", "Maximum SM clock", MHZ),
    "device.mem_clock_max_mhz": _gauge("soak_device_memory_clock_max_hertz", "Maximum memory clock", MHZ),
    "device.clock_event_reasons": _gauge(
        "soak_device_clock_event_reasons", "Clock-event (throttle) reasons bitmask, as NVML reports it"
    ),
    "device.utilization_ratio": _gauge("soak_device_utilization_ratio", "Share of time a kernel was running"),
    "device.memory_utilization_ratio": _gauge(
        "soak_device_memory_utilization_ratio", "Share of time device memory was read or written"
    ),
    "device.memory_used_bytes": _gauge("soak_device_memory_used_bytes", "Device memory in use"),
    "device.memory_total_bytes": _gauge("soak_device_memory_total_bytes", "Device memory installed"),
    "device.pstate": _gauge("soak_device_performance_state", "Performance state (0 is the fastest)"),
    "device.violation_power_s": _counter(
        "soak_device_power_violation_seconds", "Time the device was held below its clocks by the power limit"
    ),
    "device.violation_thermal_s": _counter(
        "soak_device_thermal_violation_seconds", "Time the device was held below its clocks by temperature"
    ),
    "device.fan_speed_ratio": _gauge("soak_device_fan_speed_ratio", "Fan speed as a share of its maximum"),
    "device.pcie_link_gen": _gauge("soak_device_pcie_link_generation", "Current PCIe link generation"),
    "device.pcie_link_gen_max": _gauge("soak_device_pcie_link_generation_max", "Maximum PCIe link generation"),
    "device.pcie_link_width": _gauge("soak_device_pcie_link_width_lanes", "Current PCIe link width"),
    "device.pcie_link_width_max": _gauge("soak_device_pcie_link_width_max_lanes", "Maximum PCIe link width"),
    "device.pcie_replays": _counter("soak_device_pcie_replays", "PCIe replays (link-level retransmissions)"),
    "device.nvlink_active_links": _gauge("soak_device_nvlink_active_links", "NVLink links up"),
    "device.ecc_enabled": _gauge("soak_device_ecc_enabled", "1 when ECC is on"),
    "device.health_status": _gauge("soak_device_health_status", "Vendor health: 0 ok, 1 warning, 2 alarm or critical"),
    "worker.busy_ratio": _gauge("soak_worker_busy_ratio", "Share of the interval the workload was stepping"),
    "worker.device_time_ratio": _gauge(
        "soak_worker_device_time_ratio", "Device time per second the workload was stepping"
    ),
    "worker.memory_allocated_bytes": _gauge(
        "soak_worker_device_memory_allocated_bytes", "Device memory the worker's tensors hold (torch allocator)"
    ),
    "worker.memory_reserved_bytes": _gauge(
        "soak_worker_device_memory_reserved_bytes", "Device memory the worker's allocator has reserved, cache included"
    ),
    "host.cpu_ratio": _gauge("soak_host_cpu_ratio", "Host CPU utilisation"),
    "host.memory_used_bytes": _gauge("soak_host_memory_used_bytes", "Host memory in use"),
    "host.memory_total_bytes": _gauge("soak_host_memory_total_bytes", "Host memory installed"),
    "host.swap_used_bytes": _gauge("soak_host_swap_used_bytes", "Swap in use"),
    "host.swap_total_bytes": _gauge("soak_host_swap_total_bytes", "Swap configured"),
    "process.rss_bytes": _gauge("soak_worker_rss_bytes", "Resident memory of the device's worker process"),
    "process.uss_bytes": _gauge("soak_worker_uss_bytes", "Memory only the device's worker process holds"),
    "process.threads": _gauge("soak_worker_threads", "Threads of the device's worker process"),
    "process.open_files": _gauge("soak_worker_open_files", "File descriptors of the device's worker process"),
}

_PATTERNS: tuple[tuple[re.Pattern[str], Family], ...] = (
    (
        re.compile(r"^device\.clock_event\.(?P<reason>[a-z_]+)$"),
        _gauge("soak_device_clock_event_active", "1 while the named clock-event (throttle) reason holds"),
    ),
    (
        re.compile(r"^device\.ecc_(?P<error>corrected|uncorrected)_(?P<counter>volatile|aggregate)_errors$"),
        _counter("soak_device_ecc_errors", "ECC errors (volatile: since the driver loaded; aggregate: lifetime)"),
    ),
    (
        re.compile(r"^device\.remapped_rows_(?P<state>correctable|uncorrectable|pending|failure)$"),
        _gauge("soak_device_remapped_rows", "HBM rows remapped, by cause; pending and failure are 0/1 flags"),
    ),
    (
        re.compile(r"^device\.retired_pages_(?P<cause>single_bit|double_bit|pending)$"),
        _gauge("soak_device_retired_pages", "Device memory pages retired, by cause"),
    ),
    (
        re.compile(r"^throughput\.(?P<workload>[a-z0-9_]+)$"),
        _gauge("soak_workload_throughput", "Work per second of device time, in the workload's unit"),
    ),
    (
        re.compile(r"^latency\.(?P<workload>[a-z0-9_]+)\.p(?P<percentile>\d+)_ms$"),
        Family("soak_workload_step_latency_seconds", "gauge", "Step latency percentile over the interval", 1e-3),
    ),
    (
        re.compile(r"^efficiency\.(?P<workload>[a-z0-9_]+)\.n(?P<devices>\d+)_ratio$"),
        _gauge("soak_workload_scaling_efficiency_ratio", "Data-parallel efficiency at n devices against one"),
    ),
    (
        re.compile(r"^host\.temperature\.(?P<sensor>[a-z0-9_]+)_c$"),
        _gauge("soak_host_temperature_celsius", "Hottest reading of a host sensor chip"),
    ),
)


def family_of(metric: str) -> Family:
    """The family `metric` belongs to; one soak has not catalogued keeps its name, as a gauge."""
    known = EXACT.get(metric)
    if known is not None:
        return known
    for pattern, family in _PATTERNS:
        match = pattern.match(metric)
        if match:
            return Family(family.name, family.kind, family.help, family.scale, match.groupdict())
    return _gauge("soak_" + _UNSAFE.sub("_", metric), f"soak metric {metric}")

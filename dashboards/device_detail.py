"""Device detail: what one device did — heat, power, clocks and why they dropped, memory, work, errors."""

from __future__ import annotations

from dashboards.dashboard import Dashboard, Row
from dashboards.panels import Panel, Step, Target, dashed, state_timeline, table, timeseries, value_mapping
from dashboards.variables import DEVICE_VARIABLES, device_matcher, finding_matcher

SELECTED = device_matcher()
THROUGHPUT = f"soak_workload_throughput{SELECTED}"
BASELINE_WINDOW = "7d"
# Long enough that a GC sawtooth averages out, short enough that the line follows a leak that started today.
TREND_WINDOW = "6h"


def _thermal_and_power() -> list[Panel]:
    return [
        timeseries(
            "Temperature and slowdown threshold",
            [
                Target(f"soak_device_temperature_celsius{SELECTED}", legend="die"),
                Target(f"soak_device_memory_temperature_celsius{SELECTED}", legend="memory"),
                Target(f"soak_device_slowdown_temperature_celsius{SELECTED}", legend="slowdown"),
            ],
            unit="celsius",
            overrides=[dashed("^slowdown$", "red")],
            description="The device slows itself down at the dashed line; the thermal detector watches the margin.",
        ),
        timeseries(
            "Power and cap",
            [
                Target(f"soak_device_power_watts{SELECTED}", legend="draw"),
                Target(f"soak_device_power_limit_watts{SELECTED}", legend="cap"),
            ],
            unit="watt",
            overrides=[dashed("^cap$", "red")],
            description="A device at its cap is not broken; the cost shows as power_cap throttling below.",
        ),
    ]


def _clocks() -> list[Panel]:
    return [
        timeseries(
            "SM clock",
            [
                Target(f"soak_device_sm_clock_hertz{SELECTED}", legend="SM clock"),
                Target(f"soak_device_sm_clock_max_hertz{SELECTED}", legend="max"),
            ],
            unit="hertz",
            overrides=[dashed("^max$", "gray")],
        ),
        state_timeline(
            "Throttle reasons",
            [Target(f"soak_device_clock_event_active{SELECTED}", legend="{{reason}}")],
            mappings=value_mapping({0: ("clear", "transparent"), 1: ("active", "red")}),
            thresholds=[Step("transparent"), Step("red", 1)],
            description="Each band is red while that clock-event reason holds (docs/metrics.md).",
        ),
    ]


def _memory() -> list[Panel]:
    allocated = f"soak_worker_device_memory_allocated_bytes{SELECTED}"
    rss = f"soak_worker_rss_bytes{SELECTED}"
    return [
        timeseries(
            "Worker memory with trend",
            [
                Target(allocated, legend="device allocated"),
                Target(f"soak_worker_device_memory_reserved_bytes{SELECTED}", legend="device reserved"),
                Target(rss, legend="host RSS"),
                Target(f"predict_linear({allocated}[{TREND_WINDOW}], 0)", legend="trend device allocated"),
                Target(f"predict_linear({rss}[{TREND_WINDOW}], 0)", legend="trend host RSS"),
            ],
            unit="bytes",
            overrides=[dashed("^trend", "purple")],
            description=f"Dashed: least-squares line over the trailing {TREND_WINDOW}; a leak keeps it rising.",
        ),
        timeseries(
            "Device memory in use",
            [
                Target(
                    f"soak_device_memory_used_bytes{SELECTED} / soak_device_memory_total_bytes{SELECTED}",
                    legend="used",
                )
            ],
            unit="percentunit",
            min_value=0,
            description="All processes on the device, as the vendor tool sees it.",
        ),
    ]


def _work() -> list[Panel]:
    baseline = f"avg_over_time({THROUGHPUT}[{BASELINE_WINDOW}])"
    spread = f"stddev_over_time({THROUGHPUT}[{BASELINE_WINDOW}])"
    return [
        timeseries(
            "Throughput with baseline band",
            [
                Target(THROUGHPUT, legend="{{workload}}"),
                Target(baseline, legend="baseline {{workload}}"),
                Target(f"{baseline} + {spread}", legend="baseline +1σ {{workload}}"),
                Target(f"{baseline} - {spread}", legend="baseline -1σ {{workload}}"),
            ],
            unit="ops",
            overrides=[dashed("^baseline", "gray")],
            interval="5m",
            description=f"Work per second of device time; dashed: mean ± one standard deviation over {BASELINE_WINDOW}",
        ),
        timeseries(
            "Utilisation",
            [
                Target(f"soak_device_utilization_ratio{SELECTED}", legend="device busy"),
                Target(f"soak_worker_busy_ratio{SELECTED}", legend="workload stepping"),
            ],
            unit="percentunit",
            min_value=0,
        ),
    ]


def _errors() -> list[Panel]:
    return [
        timeseries(
            "XID errors",
            [
                Target(
                    f"sum by (xid, severity) (increase(soak_device_xid_errors_total{SELECTED}[$__rate_interval]))",
                    legend="XID {{xid}} ({{severity}})",
                )
            ],
            unit="short",
            bars=True,
            description="NVIDIA XIDs by code; agents/xid.py classifies each code's severity.",
        ),
        timeseries(
            "Events by kind",
            [
                Target(
                    f"sum by (kind, severity) (increase(soak_device_events_total{SELECTED}[$__rate_interval]))",
                    legend="{{kind}} ({{severity}})",
                )
            ],
            unit="short",
            bars=True,
            description="Every event the agent forwarded: driver errors of any vendor, ECC, PCIe, SDC, workload.",
        ),
        table(
            "Findings on this device",
            [
                Target(
                    f"soak_finding_onset_timestamp_seconds{finding_matcher()} * 1000",
                    instant=True,
                    table=True,
                )
            ],
            width=24,
            unit="dateTimeAsIso",
            value_name="Onset",
            hide=("node", "device"),
            description="Findings of running campaigns with the time each problem began.",
        ),
    ]


DEVICE_DETAIL = Dashboard(
    uid="soak-device-detail",
    title="soak / Device detail",
    description="One device: temperature, power, clocks and throttle reasons, memory trend, "
    "throughput against its baseline, errors.",
    rows=[
        Row("Thermal and power", _thermal_and_power()),
        Row("Clocks", _clocks()),
        Row("Memory", _memory()),
        Row("Work", _work()),
        Row("Errors and findings", _errors()),
    ],
    variables=DEVICE_VARIABLES,
    time_from="now-24h",
)

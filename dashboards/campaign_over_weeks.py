"""Campaign over weeks: slow trends across the fleet — drift, leaks, throttling, energy, scaling, driver errors."""

from __future__ import annotations

from dashboards.dashboard import Dashboard, Row
from dashboards.panels import Panel, Target, table, timeseries
from dashboards.variables import FLEET_VARIABLES, device_matcher

SELECTED = device_matcher()
DRIVER_ERRORS = "soak_device_events_total" + device_matcher('kind="driver_error"')
THROUGHPUT = f"soak_workload_throughput{SELECTED}"
# Hourly points: weeks at screen resolution would otherwise ask Prometheus for thousands of 7-day windows.
STEP = "1h"


def _performance() -> list[Panel]:
    energy_watts = f"sum by (node, device) (rate(soak_device_energy_joules_total{SELECTED}[1h]))"
    work_per_second = f"avg by (node, device, workload) (avg_over_time({THROUGHPUT}[1h]))"
    return [
        timeseries(
            "Throughput relative to 7-day baseline",
            [
                Target(
                    f"avg_over_time({THROUGHPUT}[1h]) / avg_over_time({THROUGHPUT}[7d])",
                    legend="{{device}} {{workload}}",
                )
            ],
            unit="percentunit",
            interval=STEP,
            description="Hourly mean over the trailing week's mean: a drifting device sinks below 100 %.",
        ),
        timeseries(
            "Energy per unit of work",
            # Energy is per device, throughput per device and workload: each workload takes its device's power.
            [
                Target(
                    f"{energy_watts} / on (node, device) group_right {work_per_second}",
                    legend="{{device}} {{workload}}",
                )
            ],
            unit="joule",
            interval=STEP,
            description="Joules per unit of the workload's work; rising means the same work costs more energy.",
        ),
        timeseries(
            "Scaling efficiency",
            [
                Target(
                    f"soak_workload_scaling_efficiency_ratio{SELECTED}", legend="{{device}} {{workload}} n={{devices}}"
                )
            ],
            unit="percentunit",
            interval=STEP,
            description="Data-parallel efficiency at n devices against one.",
        ),
        timeseries(
            "Temperature margin to slowdown",
            [
                Target(
                    f"avg_over_time(soak_device_slowdown_temperature_celsius{SELECTED}[1h])"
                    f" - avg_over_time(soak_device_temperature_celsius{SELECTED}[1h])",
                    legend="{{device}}",
                )
            ],
            unit="celsius",
            interval=STEP,
            description="Hourly mean headroom; a margin shrinking week over week points at cooling.",
        ),
    ]


def _health() -> list[Panel]:
    return [
        timeseries(
            "Memory leak rate",
            [
                Target(
                    f"deriv(soak_worker_device_memory_allocated_bytes{SELECTED}[1h]) * 3600",
                    legend="device {{device}}",
                ),
                Target(f"deriv(soak_worker_rss_bytes{SELECTED}[1h]) * 3600", legend="host {{device}}"),
            ],
            unit="bytes",
            interval=STEP,
            description="Growth per hour of the worker's device allocator and host RSS; a leak stays above zero.",
        ),
        timeseries(
            "Throttle residency by reason",
            [
                Target(
                    f"avg by (node, device, reason) (avg_over_time(soak_device_clock_event_active{SELECTED}[1h]))",
                    legend="{{device}} {{reason}}",
                )
            ],
            unit="percentunit",
            min_value=0,
            interval=STEP,
            description="Share of each hour the reason held; power_cap is expected, hw_slowdown and thermal are not.",
        ),
        timeseries(
            "Driver errors per day",
            [
                Target(
                    f"sum by (node, device, severity) (increase({DRIVER_ERRORS}[1d]))", legend="{{device}} {{severity}}"
                )
            ],
            unit="short",
            bars=True,
            interval="1d",
            description="Driver errors of every vendor (NVIDIA XIDs included) by severity.",
        ),
        table(
            "Driver errors over the range",
            [
                Target(
                    f"sum by (node, device, severity) (increase({DRIVER_ERRORS}[$__range])) > 0",
                    instant=True,
                    table=True,
                )
            ],
            value_name="Errors",
            description="Devices with driver errors in the time range shown, most first.",
        ),
    ]


CAMPAIGN_OVER_WEEKS = Dashboard(
    uid="soak-campaign-over-weeks",
    title="soak / Campaign over weeks",
    description="Weeks of a campaign: throughput against baseline, leak rates, throttle residency, "
    "energy per work, scaling efficiency, driver errors.",
    rows=[Row("Performance", _performance()), Row("Health", _health())],
    variables=FLEET_VARIABLES,
    time_from="now-30d",
    refresh="15m",
)

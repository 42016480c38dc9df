"""Errors: which devices report hardware and driver faults, how often, how bad."""

from __future__ import annotations

from dashboards.dashboard import Dashboard, Row
from dashboards.panels import Panel, Target, state_timeline, table, timeseries, value_mapping
from dashboards.severity import LEVEL_STEPS, severity_overrides
from dashboards.variables import FLEET_VARIABLES, device_matcher

SELECTED = device_matcher()
XIDS = f"soak_device_xid_errors_total{SELECTED}"
DRIVER_ERRORS = "soak_device_events_total" + device_matcher('kind="driver_error"')


def _driver() -> list[Panel]:
    return [
        timeseries(
            "XID errors by severity",
            [Target(f"sum by (severity) (increase({XIDS}[$__rate_interval]))", legend="{{severity}}")],
            unit="short",
            bars=True,
            stacked=True,
            overrides=severity_overrides(),
            description="NVIDIA XIDs; a critical one is a FAIL-class code, alerted at once.",
        ),
        timeseries(
            "XID errors by code and device",
            [
                Target(
                    f"sum by (node, device, xid, severity) (increase({XIDS}[$__rate_interval]))",
                    legend="{{node}} {{device}} XID {{xid}} ({{severity}})",
                )
            ],
            unit="short",
            bars=True,
        ),
        timeseries(
            "Vendor driver faults by severity",
            [Target(f"sum by (severity) (increase({DRIVER_ERRORS}[$__rate_interval]))", legend="{{severity}}")],
            unit="short",
            bars=True,
            stacked=True,
            overrides=severity_overrides(),
            description="Fault codes from every vendor's tool and the kernel log, NVIDIA XIDs included.",
        ),
        state_timeline(
            "Vendor health status",
            [Target(f"soak_device_health_status{SELECTED}", legend="{{node}} {{device}}")],
            mappings=value_mapping({0: ("ok", "green"), 1: ("warning", "orange"), 2: ("alarm", "red")}),
            thresholds=LEVEL_STEPS,
            description="The vendor's own verdict on each device.",
        ),
        table(
            "XID errors over the range",
            [
                Target(
                    f"sum by (node, device, xid, severity) (increase({XIDS}[$__range])) > 0",
                    instant=True,
                    table=True,
                )
            ],
            width=24,
            value_name="Errors",
        ),
    ]


def _memory_and_pcie() -> list[Panel]:
    return [
        timeseries(
            "ECC errors",
            [
                Target(
                    f"sum by (node, device, error, counter) "
                    f"(increase(soak_device_ecc_errors_total{SELECTED}[$__rate_interval]))",
                    legend="{{node}} {{device}} {{error}} ({{counter}})",
                )
            ],
            unit="short",
            bars=True,
            description="Any uncorrectable error is critical; correctable ones matter by their rate.",
        ),
        timeseries(
            "Remapped rows and retired pages",
            [
                Target(f"soak_device_remapped_rows{SELECTED}", legend="{{node}} {{device}} remapped {{state}}"),
                Target(f"soak_device_retired_pages{SELECTED}", legend="{{node}} {{device}} retired {{cause}}"),
            ],
            unit="short",
            description="Running totals the driver keeps; pending and failure rows are 0/1 flags.",
        ),
        timeseries(
            "PCIe replays",
            [
                Target(
                    f"sum by (node, device) (increase(soak_device_pcie_replays_total{SELECTED}[$__rate_interval]))",
                    legend="{{node}} {{device}}",
                )
            ],
            unit="short",
            bars=True,
            description="Link-level retransmissions; a steady stream means a marginal link or riser.",
        ),
        timeseries(
            "PCIe link against its maximum",
            [
                Target(
                    f"soak_device_pcie_link_generation{SELECTED} / soak_device_pcie_link_generation_max{SELECTED}",
                    legend="{{node}} {{device}} generation",
                ),
                Target(
                    f"soak_device_pcie_link_width_lanes{SELECTED} / soak_device_pcie_link_width_max_lanes{SELECTED}",
                    legend="{{node}} {{device}} width",
                ),
            ],
            unit="percentunit",
            min_value=0,
            description="Below 100 % while busy, the link trained down (idle devices may lower it to save power).",
        ),
    ]


ERRORS = Dashboard(
    uid="soak-errors",
    title="soak / Errors",
    description="XIDs and vendor fault codes by severity over time; ECC, row remapping, retired pages and PCIe.",
    rows=[Row("Driver errors", _driver()), Row("Memory and PCIe", _memory_and_pcie())],
    variables=FLEET_VARIABLES,
    time_from="now-7d",
)

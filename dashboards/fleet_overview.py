"""Fleet overview: is anything wrong anywhere, and where? One row per node, one cell per device."""

from __future__ import annotations

from dashboards.dashboard import Dashboard, Row
from dashboards.panels import Panel, Target, stat, table
from dashboards.severity import LEVEL_MAPPING, LEVEL_STEPS, SEVERITY_COLORS, severity_overrides
from dashboards.variables import FINDING_CAMPAIGN, INVENTORY_METRIC, NODE

ONSET = "soak_finding_onset_timestamp_seconds"
FINDINGS = f'{ONSET}{{campaign=~"$campaign"}}'

# Critical wins over warning, warning over none: `or` keeps the left side's series and adds only devices it lacks.
# The inventory term gives devices without findings their green 0 cell.
WORST_FINDING_LEVEL = f"""max by (node, device) (
    2 * group by (node, device) ({ONSET}{{campaign=~"$campaign", node=~"$node", severity="critical"}})
  or
    group by (node, device) ({ONSET}{{campaign=~"$campaign", node=~"$node", severity="warning"}})
  or
    0 * group by (node, device) ({INVENTORY_METRIC}{{node=~"$node", device!=""}})
)"""

DEVICE_DETAIL_LINK = {
    "title": "Device detail",
    "url": "/d/soak-device-detail/soak-device-detail?var-node=${__field.labels.node}"
    "&var-device=${__field.labels.device}&${__url_time_range}",
}


def _summary() -> list[Panel]:
    by_severity = [
        Target(f'count({ONSET}{{campaign=~"$campaign", severity="{severity}"}}) or vector(0)', legend=severity)
        for severity in SEVERITY_COLORS
    ]
    return [
        stat(
            "Campaigns",
            [Target(f'sum(soak_campaigns{{state="{state}"}})', legend=state) for state in ("running", "paused")],
            description="Campaigns the controller is running or has paused.",
        ),
        stat(
            "Devices reserved",
            [Target("soak_devices_reserved", legend="reserved")],
            description="Devices held by a campaign.",
        ),
        stat(
            "Active findings by severity",
            by_severity,
            width=8,
            overrides=severity_overrides(),
            description="Findings of running campaigns; critical means act now, warning act this week.",
        ),
        stat(
            "Nodes reporting",
            [Target(f"count(count by (node) ({INVENTORY_METRIC}))", legend="nodes")],
            description="Nodes whose agent Prometheus scrapes now.",
        ),
        stat(
            "Samples ingested",
            [Target("sum(rate(soak_samples_ingested_total[$__rate_interval]))", legend="samples/s")],
            unit="ops",
            description="Samples the controller stores per second; zero while campaigns run means ingest stopped.",
        ),
        table(
            "Worst offenders this week",
            [
                Target(
                    f'topk(10, count by (node, device) (max_over_time({ONSET}{{campaign=~"$campaign", '
                    f'severity=~"critical|warning"}}[7d])))',
                    instant=True,
                    table=True,
                )
            ],
            value_name="Findings (7 d)",
            description="Devices with the most warning or critical findings seen in the last seven days.",
        ),
        table(
            "Active findings by kind",
            [Target(f"count by (kind, severity) ({FINDINGS})", instant=True, table=True)],
            value_name="Findings",
            description="What the detectors found in running campaigns (docs/detectors.md lists the kinds).",
        ),
    ]


def _node_row() -> list[Panel]:
    cells = stat(
        "Devices on $node by worst active finding",
        [Target(WORST_FINDING_LEVEL, legend="{{device}}", instant=True)],
        width=14,
        height=6,
        thresholds=LEVEL_STEPS,
        mappings=LEVEL_MAPPING,
        links=[DEVICE_DETAIL_LINK],
        color_background=True,
        description="Green: no warning or critical finding. Click a cell for the device's detail.",
    )
    findings = table(
        "Active findings on $node",
        [Target(f'{ONSET}{{campaign=~"$campaign", node=~"$node"}} * 1000', instant=True, table=True)],
        width=10,
        height=6,
        unit="dateTimeAsIso",
        value_name="Onset",
        hide=("__name__", "node"),
        description="Each finding with the time its problem began, as the detector estimates it.",
    )
    return [cells, findings]


FLEET_OVERVIEW = Dashboard(
    uid="soak-fleet-overview",
    title="soak / Fleet overview",
    description="Worst active finding per device, findings by severity, campaigns and the week's worst offenders.",
    rows=[Row("Fleet", _summary()), Row("Node $node", _node_row(), repeat="node")],
    variables=(FINDING_CAMPAIGN, NODE),
)

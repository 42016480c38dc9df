"""Template variables (campaign, node, device, vendor, model) and the label matcher that applies them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dashboards.datasource import datasource_ref

# Every device family carries these labels (docs/metrics.md); the temperature is one every collector reports.
INVENTORY_METRIC = "soak_device_temperature_celsius"


@dataclass(frozen=True)
class Variable:
    """A query variable filled from label_values of `source`, narrowed by the variables before it."""

    name: str
    label: str
    depends_on: tuple[str, ...] = ()
    # Device detail wants exactly one device; the fleet views want any subset.
    multi: bool = True
    source: str = INVENTORY_METRIC

    def query(self) -> str:
        """The label_values query listing this variable's choices."""
        matchers = ", ".join(f'{other}=~"${other}"' for other in self.depends_on)
        return f"label_values({self.source}{{{matchers}}}, {self.name})"

    def to_json(self) -> dict[str, Any]:
        """The variable as Grafana stores it."""
        query = self.query()
        return {
            # ".*" rather than Grafana's list of every value: it also matches the empty campaign of an idle device.
            "allValue": ".*",
            "current": {},
            "datasource": datasource_ref(),
            "definition": query,
            "hide": 0,
            "includeAll": self.multi,
            "label": self.label,
            "multi": self.multi,
            "name": self.name,
            "options": [],
            "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }


# Agents and the controller both label with the campaign's id; the overview lists the campaigns with findings.
CAMPAIGN = Variable("campaign", "Campaign id")
FINDING_CAMPAIGN = Variable("campaign", "Campaign", source="soak_finding_onset_timestamp_seconds")
NODE = Variable("node", "Node", ("campaign",))
DEVICE = Variable("device", "Device", ("campaign", "node"))
VENDOR = Variable("vendor", "Vendor", ("campaign", "node"))
MODEL = Variable("model", "Model", ("campaign", "node", "vendor"))
ONE_DEVICE = Variable("device", "Device", ("campaign", "node"), multi=False)
FLEET_VARIABLES = (CAMPAIGN, NODE, DEVICE, VENDOR, MODEL)
DEVICE_VARIABLES = (CAMPAIGN, NODE, ONE_DEVICE, VENDOR, MODEL)


def device_matcher(*extra: str) -> str:
    """The label matcher selecting the devices the variables chose, plus any extra matchers."""
    matchers = [f'{variable.name}=~"${variable.name}"' for variable in FLEET_VARIABLES]
    return "{" + ", ".join([*matchers, *extra]) + "}"


def finding_matcher(*extra: str) -> str:
    """The matcher for the controller's finding series by node and device (their campaign label is another name)."""
    matchers = [f'{name}=~"${name}"' for name in ("node", "device")]
    return "{" + ", ".join([*matchers, *extra]) + "}"

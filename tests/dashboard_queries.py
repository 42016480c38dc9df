"""The committed dashboards' panels and queries, with Grafana's variables replaced as Grafana would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

JSON_DIR = Path(__file__).resolve().parents[1] / "dashboards" / "json"
DASHBOARD_FILES = sorted(JSON_DIR.glob("*.json"))

# What Grafana would put in place of its variables: any value for the label filters, typical windows for the rest.
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$campaign": ".*",
    "$node": ".*",
    "$device": ".*",
    "$vendor": ".*",
    "$model": ".*",
}


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def substitute(expr: str) -> str:
    """The query with every variable replaced."""
    # Longest names first, so that $__rate_interval is not read as $__r... of a shorter one.
    for name in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(name, SUBSTITUTIONS[name])
    return expr

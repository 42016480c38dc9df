"""Finding severities as levels and colours, shared by every panel that colours by severity."""

from __future__ import annotations

from typing import Any

from dashboards.panels import Step, by_name_color, value_mapping

SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}

# The worst active finding as a number, so that max() picks it: none 0, warning 1, critical 2 (info is no alarm).
LEVEL_STEPS = [Step("green"), Step("orange", 1), Step("red", 2)]
LEVEL_MAPPING = value_mapping({0: ("ok", "green"), 1: ("warning", "orange"), 2: ("critical", "red")})


def severity_overrides() -> list[dict[str, Any]]:
    """Series named after a severity in that severity's colour."""
    return by_name_color(SEVERITY_COLORS)

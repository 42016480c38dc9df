"""A dashboard: rows of panels laid out left to right on Grafana's 24-column grid, ids given in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboards.panels import Panel
from dashboards.variables import Variable

GRID_COLUMNS = 24
SCHEMA_VERSION = 39


@dataclass
class Row:
    """A titled group of panels; `repeat` names a variable to repeat the row for, one copy per value."""

    title: str
    panels: list[Panel]
    repeat: str | None = None


@dataclass
class Dashboard:
    """A whole dashboard; its uid is also its file name and the path of its URL."""

    uid: str
    title: str
    description: str
    rows: list[Row]
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-24h"
    refresh: str = "1m"
    tags: list[str] = field(default_factory=lambda: ["soak"])

    def to_json(self) -> dict[str, Any]:
        """The dashboard as Grafana stores it."""
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "links": [
                {
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "tags": ["soak"],
                    "title": "soak dashboards",
                    "type": "dashboards",
                }
            ],
            "panels": self._layout(),
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "tags": self.tags,
            "templating": {"list": [variable.to_json() for variable in self.variables]},
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
        }

    def _layout(self) -> list[dict[str, Any]]:
        # Rows are never collapsed, so their panels sit at the top level right after the row, as Grafana expects.
        laid_out: list[dict[str, Any]] = []
        next_id = 1
        y = 0
        for row in self.rows:
            row_json: dict[str, Any] = {
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
                "id": next_id,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
            if row.repeat is not None:
                row_json["repeat"] = row.repeat
            laid_out.append(row_json)
            next_id += 1
            y += 1
            x = 0
            line_height = 0
            for panel in row.panels:
                if panel.width > GRID_COLUMNS:
                    raise ValueError(f"panel {panel.title!r}: width {panel.width} exceeds {GRID_COLUMNS} columns")
                if x + panel.width > GRID_COLUMNS:
                    y += line_height
                    x, line_height = 0, 0
                laid_out.append(panel.to_json(next_id, {"h": panel.height, "w": panel.width, "x": x, "y": y}))
                next_id += 1
                x += panel.width
                line_height = max(line_height, panel.height)
            y += line_height
        return laid_out

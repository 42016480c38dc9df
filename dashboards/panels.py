"""Typed panel and target builders; each renders the JSON Grafana's schemaVersion 39 expects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dashboards.datasource import datasource_ref

PanelKind = Literal["timeseries", "stat", "table", "state-timeline"]


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    # Tables want one row per series, not one frame per series.
    table: bool = False

    def to_json(self, ref_id: str) -> dict[str, Any]:
        """The target as Grafana stores it."""
        return {
            "datasource": datasource_ref(),
            "editorMode": "code",
            "expr": self.expr,
            "format": "table" if self.table else "time_series",
            "instant": self.instant,
            "legendFormat": self.legend,
            "range": not self.instant,
            "refId": ref_id,
        }


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` upward (None is the base) the colour is `color`."""

    color: str
    value: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The step as Grafana stores it."""
        return {"color": self.color, "value": self.value}


@dataclass
class Panel:
    """A panel before layout: the dashboard gives it an id and a place on the grid."""

    title: str
    kind: PanelKind
    targets: list[Target]
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[Step] = field(default_factory=lambda: [Step("green")])
    mappings: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    min_value: float | None = None
    max_value: float | None = None
    # The smallest step Grafana asks for; daily bars want "1d", not the screen's resolution.
    interval: str | None = None

    def to_json(self, panel_id: int, grid_pos: dict[str, int]) -> dict[str, Any]:
        """The panel as Grafana stores it."""
        defaults: dict[str, Any] = {
            "custom": self.custom,
            "links": self.links,
            "mappings": self.mappings,
            "thresholds": {"mode": "absolute", "steps": [step.to_json() for step in self.thresholds]},
            "unit": self.unit,
        }
        if self.min_value is not None:
            defaults["min"] = self.min_value
        if self.max_value is not None:
            defaults["max"] = self.max_value
        panel: dict[str, Any] = {
            "datasource": datasource_ref(),
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "gridPos": grid_pos,
            "id": panel_id,
            "options": self.options,
            "targets": [target.to_json(chr(ord("A") + i)) for i, target in enumerate(self.targets)],
            "title": self.title,
            "transformations": self.transformations,
            "type": self.kind,
        }
        if self.interval is not None:
            panel["interval"] = self.interval
        return panel


_LEGEND = {"displayMode": "table", "placement": "right", "showLegend": True, "calcs": ["lastNotNull", "max"]}
_TOOLTIP = {"mode": "multi", "sort": "desc"}


def timeseries(
    title: str,
    targets: list[Target],
    *,
    unit: str,
    description: str = "",
    width: int = 12,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
    overrides: list[dict[str, Any]] | None = None,
    min_value: float | None = None,
    interval: str | None = None,
) -> Panel:
    """A time series panel; `bars` for counts per interval, where lines would hide single events."""
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
    }
    return Panel(
        title=title,
        kind="timeseries",
        targets=targets,
        unit=unit,
        description=description,
        width=width,
        height=height,
        custom=custom,
        options={"legend": _LEGEND, "tooltip": _TOOLTIP},
        overrides=overrides or [],
        min_value=min_value,
        interval=interval,
    )


def stat(
    title: str,
    targets: list[Target],
    *,
    unit: str = "short",
    description: str = "",
    width: int = 4,
    height: int = 4,
    thresholds: list[Step] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    links: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    color_background: bool = False,
) -> Panel:
    """A stat panel showing each series' last value."""
    return Panel(
        title=title,
        kind="stat",
        targets=targets,
        unit=unit,
        description=description,
        width=width,
        height=height,
        thresholds=thresholds or [Step("green")],
        mappings=mappings or [],
        links=links or [],
        overrides=overrides or [],
        options={
            "colorMode": "background" if color_background else "value",
            "graphMode": "none",
            "justifyMode": "center",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        },
    )


def table(
    title: str,
    targets: list[Target],
    *,
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    value_name: str = "Value",
    hide: tuple[str, ...] = (),
) -> Panel:
    """A table of instant values, one row per series, largest first; the value column is called `value_name`."""
    organize = {
        "excludeByName": {"Time": True, **{name: True for name in hide}},
        "renameByName": {"Value": value_name},
    }
    return Panel(
        title=title,
        kind="table",
        targets=targets,
        unit=unit,
        description=description,
        width=width,
        height=height,
        options={"showHeader": True, "sortBy": [{"desc": True, "displayName": value_name}]},
        transformations=[{"id": "organize", "options": organize}],
    )


def state_timeline(
    title: str,
    targets: list[Target],
    *,
    mappings: list[dict[str, Any]],
    thresholds: list[Step],
    description: str = "",
    width: int = 12,
    height: int = 8,
) -> Panel:
    """A state timeline: one band per series, coloured by the mapped state."""
    return Panel(
        title=title,
        kind="state-timeline",
        targets=targets,
        description=description,
        width=width,
        height=height,
        mappings=mappings,
        thresholds=thresholds,
        custom={"fillOpacity": 80, "lineWidth": 0},
        options={
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "never",
            "tooltip": {"mode": "single", "sort": "none"},
        },
    )


def value_mapping(states: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """Map integer values to (text, colour), e.g. a severity level to its name."""
    options = {
        str(value): {"color": color, "index": i, "text": text}
        for i, (value, (text, color)) in enumerate(states.items())
    }
    return [{"options": options, "type": "value"}]


def by_name_color(colors: dict[str, str]) -> list[dict[str, Any]]:
    """Overrides giving series of these exact names fixed colours, e.g. a severity its usual colour."""
    return [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
        }
        for name, color in colors.items()
    ]


def dashed(name_regex: str, color: str) -> dict[str, Any]:
    """An override drawing the series whose name matches as a dashed, unfilled reference line (a limit, a baseline)."""
    return {
        "matcher": {"id": "byRegexp", "options": name_regex},
        "properties": [
            {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "color", "value": {"fixedColor": color, "mode": "fixed"}},
        ],
    }

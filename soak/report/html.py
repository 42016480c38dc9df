"""The report as one self-contained HTML page: jinja2 with autoescape, plots embedded, print CSS."""

from __future__ import annotations

import math

import jinja2

from soak.report.model import NOT_MEASURED, Report


def number(value: float | None) -> str:
    """A figure to three significant digits (thousands grouped), or "not measured" when the store lacks it."""
    if value is None or not math.isfinite(value):
        return NOT_MEASURED
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def duration(hours: float) -> str:
    """A length of time for people: "4 min 12 s", "11.5 h", "28.0 days"."""
    if hours < 1.0:
        minutes, seconds = divmod(round(hours * 3600), 60)
        return f"{minutes} min {seconds} s"
    if hours < 72.0:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def environment() -> jinja2.Environment:
    """Templates from soak/report/templates; autoescape on, so campaign names and plan text cannot inject markup."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("soak.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["n"] = number
    env.globals["duration"] = duration
    return env


def render_html(report: Report) -> str:
    """The report's HTML."""
    return environment().get_template("report.html.j2").render(r=report)

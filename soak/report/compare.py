"""Campaigns side by side: the same workloads on different hardware or driver versions.

Each campaign's figures are those of its own report (built from the store), reduced to fleet medians per workload,
so that a comparison never disagrees with the reports it summarises.
"""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import BaseModel

from soak.report.figures import work_unit
from soak.report.html import environment, number
from soak.report.model import NOT_MEASURED, Report, Verdict
from soak.report.pdf import H1, H2, build_pdf, paragraph, table


class WorkloadColumn(BaseModel):
    """One workload in one campaign: fleet medians, and the time tax against the best campaign."""

    workload: str
    unit: str
    devices: int
    median_sustained: float
    median_sustained_per_watt: float | None
    median_coefficient_of_variation: float
    worst_drift_percent: float | None
    median_joules_per_unit: float | None
    slower_than_best_percent: float
    more_time_percent: float


class CampaignColumn(BaseModel):
    """One campaign's summary."""

    campaign_id: int
    campaign_name: str
    interim: bool
    verdict: Verdict
    hardware: list[str]
    drivers: list[str]
    software: list[str]
    devices: int
    device_hours_under_load: float
    workloads: list[WorkloadColumn]
    driver_errors_per_device_day: float
    sdc_events: int
    restarts_per_1000_device_hours: float
    critical_findings: int
    warning_findings: int
    uptime_share: float
    mtbf_h: float | None
    mtbf_lower_h: float | None
    mtbf_upper_h: float | None


class Comparison(BaseModel):
    """Campaigns side by side; the JSON is its dump."""

    campaigns: list[CampaignColumn]
    workloads: list[str]
    notes: list[str]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _column(report: Report) -> CampaignColumn:
    cover, availability = report.cover, report.cost.availability
    power = {device.device: device.mean_power_w for device in report.devices}
    workloads: dict[str, list[Any]] = {}
    for device in report.devices:
        for figures in device.throughput:
            workloads.setdefault(figures.workload, []).append((device.device, figures))
    columns = []
    for workload, entries in sorted(workloads.items()):
        per_watt = [f.sustained / watts for d, f in entries if (watts := power.get(d))]
        drifts = [f.drift_percent for _, f in entries if f.drift_percent is not None]
        columns.append(
            WorkloadColumn(
                workload=workload,
                unit=entries[0][1].unit,
                devices=len(entries),
                median_sustained=statistics.median(f.sustained for _, f in entries),
                median_sustained_per_watt=_median(per_watt),
                median_coefficient_of_variation=statistics.median(f.coefficient_of_variation for _, f in entries),
                worst_drift_percent=min(drifts) if drifts else None,
                median_joules_per_unit=_median([f.joules_per_unit for _, f in entries if f.joules_per_unit]),
                slower_than_best_percent=0.0,
                more_time_percent=0.0,
            )
        )
    device_days = availability.device_hours / 24.0
    driver_errors = sum(sum(device.driver_errors_by_severity.values()) for device in report.devices)
    restarts = sum(device.restarts for device in report.devices)
    loaded = availability.device_hours_under_load
    return CampaignColumn(
        campaign_id=cover.campaign_id,
        campaign_name=cover.campaign_name,
        interim=cover.interim,
        verdict=report.verdict,
        hardware=[f"{group.devices} × {group.vendor} {group.model}" for group in cover.fleet],
        drivers=sorted({driver for group in cover.fleet for driver in group.drivers}),
        software=sorted({f"{k} {v}" for group in cover.fleet for k, vs in group.software.items() for v in vs}),
        devices=len(cover.devices),
        device_hours_under_load=loaded,
        workloads=columns,
        driver_errors_per_device_day=driver_errors / device_days if device_days > 0 else 0.0,
        sdc_events=sum(device.sdc_events for device in report.devices),
        restarts_per_1000_device_hours=1000.0 * restarts / loaded if loaded > 0 else 0.0,
        critical_findings=sum(finding.severity == "critical" for finding in report.findings),
        warning_findings=sum(finding.severity == "warning" for finding in report.findings),
        uptime_share=availability.uptime_share,
        mtbf_h=availability.mtbf_h,
        mtbf_lower_h=availability.mtbf_lower_h,
        mtbf_upper_h=availability.mtbf_upper_h,
    )


def compare_reports(reports: list[Report]) -> Comparison:
    """The comparison of campaigns whose reports are given, in the order given."""
    columns = [_column(report) for report in reports]
    notes = []
    names = sorted({w.workload for column in columns for w in column.workloads})
    for workload in names:
        entries = [w for column in columns for w in column.workloads if w.workload == workload]
        units = {w.unit for w in entries}
        if len(units) > 1:
            notes.append(f"{workload}: reported in different units ({', '.join(sorted(units))}); not ranked")
            continue
        best = max(w.median_sustained for w in entries)
        for w in entries:
            w.slower_than_best_percent = 100.0 * (1.0 - w.median_sustained / best) if best > 0 else 0.0
            w.more_time_percent = 100.0 * w.slower_than_best_percent / (100.0 - w.slower_than_best_percent)
        if len(entries) < len(columns):
            notes.append(f"{workload}: ran in {len(entries)} of {len(columns)} campaigns")
    if any(column.interim for column in columns):
        notes.append("a campaign still running is compared on its figures so far (interim)")
    return Comparison(campaigns=columns, workloads=names, notes=notes)


def comparison_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The comparison as a table, one row per figure and one column per campaign: what HTML and PDF show."""
    campaigns = comparison.campaigns
    header = ["Figure"] + [f"#{c.campaign_id} {c.campaign_name}" for c in campaigns]
    rows: list[list[str]] = [
        ["Verdict"] + [c.verdict.value + (" (interim)" if c.interim else "") for c in campaigns],
        ["Hardware"] + ["; ".join(c.hardware) for c in campaigns],
        ["Drivers"] + [", ".join(c.drivers) for c in campaigns],
        ["Software"] + [", ".join(c.software) or "not reported" for c in campaigns],
        ["Device-hours under load"] + [f"{c.device_hours_under_load:.1f}" for c in campaigns],
    ]
    for workload in comparison.workloads:
        cells = [next((w for w in c.workloads if w.workload == workload), None) for c in campaigns]
        rows += [
            [f"{workload}: median sustained"] + [f"{number(w.median_sustained)} {w.unit}" if w else "—" for w in cells],
            [f"{workload}: sustained per watt"]
            + [f"{number(w.median_sustained_per_watt)} {w.unit}/W" if w else "—" for w in cells],
            [f"{workload}: coefficient of variation"]
            + [f"{100 * w.median_coefficient_of_variation:.2f} %" if w else "—" for w in cells],
            [f"{workload}: worst drift"] + [f"{number(w.worst_drift_percent)} %" if w else "—" for w in cells],
            [f"{workload}: energy per unit of work"] + [_energy(w) for w in cells],
            [f"{workload}: more time than the best"] + [f"{w.more_time_percent:.2f} %" if w else "—" for w in cells],
        ]
    rows += [
        ["Driver errors per device-day"] + [f"{c.driver_errors_per_device_day:.3g}" for c in campaigns],
        ["SDC events"] + [str(c.sdc_events) for c in campaigns],
        ["Restarts per 1000 device-hours"] + [f"{c.restarts_per_1000_device_hours:.3g}" for c in campaigns],
        ["Critical / warning findings"] + [f"{c.critical_findings} / {c.warning_findings}" for c in campaigns],
        ["Uptime"] + [f"{100 * c.uptime_share:.1f} %" for c in campaigns],
        ["MTBF (h)"] + [_mtbf(c) for c in campaigns],
    ]
    return header, rows


def render_comparison_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page."""
    header, rows = comparison_rows(comparison)
    return environment().get_template("compare.html.j2").render(header=header, rows=rows, notes=comparison.notes)


def render_comparison_pdf(comparison: Comparison) -> bytes:
    """The comparison as a PDF."""
    header, rows = comparison_rows(comparison)
    story: list[Any] = [paragraph("Soak campaign comparison", H1), table(header, rows, [2] + [3] * (len(header) - 1))]
    if comparison.notes:
        story += [paragraph("Notes", H2)] + [paragraph(note) for note in comparison.notes]
    return build_pdf(story, title="Soak campaign comparison")


def _energy(column: WorkloadColumn | None) -> str:
    if column is None:
        return "—"
    if column.median_joules_per_unit is None:
        return NOT_MEASURED
    return f"{number(column.median_joules_per_unit)} J per {work_unit(column.unit)}"


def _mtbf(column: CampaignColumn) -> str:
    if column.mtbf_h is None:
        return f"no interruption (≥ {number(column.mtbf_lower_h)})"
    return f"{number(column.mtbf_h)} ({number(column.mtbf_lower_h)} – {number(column.mtbf_upper_h)})"

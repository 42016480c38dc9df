"""The report as a PDF, drawn with reportlab from the same document as the HTML: A4 landscape, numbered pages,
every table cell a wrapping paragraph so that no table runs off the page."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from soak.report.html import duration, number
from soak.report.model import FindingEntry, Report, Verdict

# DejaVu Sans (shipped with matplotlib) has the glyphs the report writes (≤, −, –, °, ×); Helvetica lacks some.
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
pdfmetrics.registerFont(TTFont("DejaVuSans", str(FONT_DIR / "DejaVuSans.ttf")))
pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(FONT_DIR / "DejaVuSans-Bold.ttf")))
pdfmetrics.registerFontFamily("DejaVuSans", normal="DejaVuSans", bold="DejaVuSans-Bold")
PAGE = landscape(A4)
MARGIN = 12 * mm
WIDTH = PAGE[0] - 2 * MARGIN
VERDICT_COLOURS = {Verdict.PASS: "#2e7d32", Verdict.CONDITIONAL: "#ef6c00", Verdict.FAIL: "#c62828"}
STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=STYLES["BodyText"], fontName="DejaVuSans", fontSize=9, leading=11.5)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7, leading=8.5, wordWrap="CJK")
HEAD = ParagraphStyle("head", parent=CELL, fontName="DejaVuSans-Bold")
H1 = ParagraphStyle("h1", parent=STYLES["Heading1"], fontName="DejaVuSans-Bold", fontSize=18)
H2 = ParagraphStyle("h2", parent=STYLES["Heading2"], fontName="DejaVuSans-Bold", fontSize=13, spaceBefore=10)
VERDICT = ParagraphStyle("verdict", parent=BODY, fontSize=22, leading=26, fontName="DejaVuSans-Bold")


class _NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab ships no type hints
    """A canvas that writes "page N of M" once it knows M."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFont("DejaVuSans", 8)
            self.drawRightString(PAGE[0] - MARGIN, 6 * mm, f"page {self._pageNumber} of {total}")
            self.drawString(MARGIN, 6 * mm, "soak report")
            super().showPage()
        super().save()


def paragraph(text: object, style: ParagraphStyle = BODY) -> Paragraph:
    """A paragraph of plain text (escaped: names from users are never markup)."""
    return Paragraph(escape(str(text)), style)


def table(header: Sequence[str], rows: Sequence[Sequence[object]], weights: Sequence[float] | None = None) -> Table:
    """A table of wrapping cells whose columns share the page width by weight; the header repeats on each page."""
    weights = list(weights) if weights is not None else [1.0] * len(header)
    widths = [WIDTH * weight / sum(weights) for weight in weights]
    data = [[paragraph(cell, HEAD) for cell in header]] + [[paragraph(cell, CELL) for cell in row] for row in rows]
    drawn = Table(data, colWidths=widths, repeatRows=1)
    drawn.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#c8c8c8")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return drawn


def _joined(values: dict[str, Any] | list[Any], empty: str = "none") -> str:
    if isinstance(values, dict):
        return ", ".join(f"{key} {value}" for key, value in values.items()) or empty
    return ", ".join(str(value) for value in values) or empty


def _findings_table(findings: list[FindingEntry]) -> Table:
    return table(
        ["Onset (h)", "Detected (h)", "Severity", "Device", "Kind", "Explanation"],
        [
            [
                f"{f.onset_h:.2f}",
                f"{f.detected_h:.2f}",
                f.severity,
                f.device or "(campaign)",
                f"{f.kind} / {f.subject}",
                f.explanation,
            ]
            for f in findings
        ],
        [0.6, 0.6, 0.6, 1.6, 1.4, 6],
    )


def _story(report: Report) -> list[Any]:
    cover = report.cover
    story: list[Any] = []
    kicker = "Soak test report" + (" — INTERIM" if cover.interim else "") + (" — imported" if cover.imported else "")
    story += [paragraph(kicker), paragraph(cover.campaign_name, H1)]
    story.append(
        table(
            ["Campaign", "Started", "Ended", "Duration", "Plan digest", "Generated"],
            [
                [
                    f"#{cover.campaign_id} ({cover.state})",
                    cover.started_at or "not started",
                    cover.ended_at or "still running",
                    f"{duration(cover.duration_h)} of {duration(cover.planned_duration_h)} planned",
                    cover.plan_digest,
                    f"{cover.generated_at}, soak {cover.soak_version}",
                ]
            ],
            [1, 1.3, 1.3, 1.2, 2.6, 1.4],
        )
    )
    colour = VERDICT_COLOURS[report.verdict]
    story += [
        Spacer(1, 4 * mm),
        Paragraph(
            f'Verdict: <font color="{colour}">{report.verdict.value}</font>' + (" (interim)" if cover.interim else ""),
            VERDICT,
        ),
        paragraph(report.verdict_reason),
        paragraph("Fleet", H2),
        paragraph(f"{len(cover.devices)} device(s) on {len(cover.nodes)} node(s): {', '.join(cover.nodes)}."),
        table(
            ["Vendor", "Model", "Devices", "Nodes", "Driver", "Firmware", "Software stack"],
            [
                [
                    g.vendor,
                    g.model,
                    g.devices,
                    _joined(g.nodes),
                    _joined(g.drivers),
                    _joined(g.firmware),
                    "; ".join(f"{k} {' / '.join(v)}" for k, v in g.software.items()) or "not reported",
                ]
                for g in cover.fleet
            ],
            [1, 1.6, 0.6, 1.6, 1, 1, 2.4],
        ),
        paragraph("Acceptance criteria", H2),
        table(
            ["Criterion", "Threshold (plan)", "Measured", "Result", "Devices breaking it"],
            [
                [c.name, c.threshold, c.measured, c.status.value.upper(), _joined(c.failing_devices)]
                for c in report.criteria
            ],
            [1.1, 2.2, 3.6, 0.8, 1.6],
        ),
        paragraph("Per-device figures", H2),
        table(
            [
                "Device",
                "Hours under load",
                "Device mem trend (MiB/h)",
                "Host RSS trend (MiB/h)",
                "Max temp (°C)",
                "Min margin (°C)",
                "Mean power (W)",
                "Energy (kWh)",
                "Throttle residency",
                "Driver errors",
                "SDC",
                "Restarts",
                "Fallback / unsupported ops",
            ],
            [
                [
                    d.device,
                    f"{d.hours_under_load:.2f}",
                    number(d.device_memory_leak_mib_per_hour),
                    number(d.host_memory_leak_mib_per_hour),
                    number(d.max_temperature_c),
                    number(d.min_temperature_margin_c),
                    number(d.mean_power_w),
                    number(d.energy_kwh),
                    _joined({k: f"{100 * v:.1f} %" for k, v in d.throttle_residency.items()}, "not measured"),
                    _joined(d.driver_errors_by_severity, "0"),
                    d.sdc_events,
                    d.restarts,
                    _joined(d.fallback_ops + d.unsupported_ops, "none seen"),
                ]
                for d in report.devices
            ],
            [2, 0.8, 0.9, 0.9, 0.7, 0.7, 0.7, 0.7, 1.6, 0.9, 0.5, 0.6, 1.3],
        ),
        Spacer(1, 3 * mm),
        table(
            [
                "Device",
                "Workload",
                "Sustained",
                "Burst",
                "Sustained / burst",
                "CV",
                "Drift",
                "Energy per unit",
                "J/TFLOP",
            ],
            [
                [
                    d.device,
                    t.workload,
                    f"{number(t.sustained)} {t.unit}",
                    f"{number(t.burst)} {t.unit}",
                    f"{100 * t.sustained_share_of_burst:.1f} %",
                    f"{100 * t.coefficient_of_variation:.2f} %",
                    "not measured" if t.drift_percent is None else f"{t.drift_percent:+.2f} %",
                    "not measured" if t.joules_per_unit is None else f"{number(t.joules_per_unit)} J per {t.work_unit}",
                    number(t.joules_per_tflop),
                ]
                for d in report.devices
                for t in d.throughput
            ],
            [2, 0.8, 1.1, 1.1, 0.8, 0.6, 0.8, 1.2, 0.7],
        ),
        paragraph("Findings and timeline", H2),
    ]
    breaking = [f for f in report.findings if f.severity != "info"]
    notes = [f for f in report.findings if f.severity == "info"]
    story.append(_findings_table(breaking) if breaking else paragraph("No warning or critical finding."))
    if notes:
        story += [
            Spacer(1, 3 * mm),
            paragraph(f"{len(notes)} informational finding(s): costs and changes noted, never a failure."),
            _findings_table(notes),
        ]
    story.append(paragraph("Campaign actions", H2))
    story.append(
        table(
            ["When (UTC)", "Who", "Role", "Action", "Outcome", "Detail"],
            [[a.at, a.actor, a.role, a.action, a.outcome, a.detail] for a in report.actions],
            [1.6, 1.2, 0.7, 1.0, 0.7, 2.5],
        )
        if report.actions
        else paragraph("No action on this campaign through the API is on record (an imported campaign has none).")
    )
    story.append(paragraph("Plots", H2))
    for plot in report.plots:
        png = base64.b64decode(plot.png_base64)
        width_px, height_px = ImageReader(io.BytesIO(png)).getSize()
        width = min(WIDTH, 250 * mm)
        height = width * height_px / width_px
        max_height = PAGE[1] - 2 * MARGIN - 20 * mm
        if height > max_height:
            width, height = width * max_height / height, max_height
        story.append(
            KeepTogether(
                [
                    paragraph(plot.title, H2),
                    Image(io.BytesIO(png), width=width, height=height),
                    paragraph(plot.caption, CELL),
                ]
            )
        )
    if report.plots_not_measured:
        story.append(paragraph(f"Not measured in this campaign: {', '.join(report.plots_not_measured)}."))
    availability = report.cost.availability
    mtbf = (
        f"no interruption: at least {number(availability.mtbf_lower_h)} h ({availability.confidence:.0%} lower bound)"
        if availability.mtbf_h is None
        else f"{number(availability.mtbf_h)} h ({availability.confidence:.0%} interval "
        f"{number(availability.mtbf_lower_h)} – {number(availability.mtbf_upper_h)} h)"
    )
    story += [
        paragraph("Cost of ownership inputs", H2),
        paragraph(
            f"Device-hours {availability.device_hours:.1f} h, {availability.device_hours_under_load:.1f} h under load "
            f"(uptime {100 * availability.uptime_share:.1f} %); {availability.interruptions} interruption(s); "
            f"MTBF {mtbf}."
        ),
        paragraph(
            f"Performance tax against {report.cost.reference}: a device X % slower needs X / (100 − X) more time."
        ),
        table(
            ["Device", "Workload", "Slower than best", "More time for the same work", "Energy per unit"],
            [
                [
                    c.device,
                    c.workload,
                    f"{c.slower_than_best_percent:.2f} %",
                    f"{c.more_time_percent:.2f} %",
                    "not measured" if c.joules_per_unit is None else f"{number(c.joules_per_unit)} J per {c.work_unit}",
                ]
                for c in report.cost.devices
            ],
        ),
    ]
    method = report.methodology
    story += [
        paragraph("Methodology", H2),
        paragraph(method.plan_description) if method.plan_description else Spacer(1, 1),
        paragraph(
            f"Samples every {method.sample_interval_s:g} s; warm-up {method.warmup_s:g} s; workload slots of "
            f"{method.rotation_s:g} s, the first {method.slot_warmup_s:g} s of each left out."
        ),
        table(
            ["Workload", "Unit", "Weight", "Duty cycle", "Precision", "Batch", "Parameters"],
            [
                [w.name, w.unit, w.weight, w.duty_cycle, w.precision, w.batch_size, _joined(w.params)]
                for w in method.workloads
            ],
            [1, 1, 0.6, 0.6, 0.7, 0.6, 4],
        ),
        Spacer(1, 3 * mm),
        table(
            ["Section", "Finding kinds", "Rule", "Thresholds"],
            [
                [d.section, _joined(d.finding_kinds), d.rule, ", ".join(f"{k}={v}" for k, v in d.thresholds.items())]
                for d in method.detectors
            ],
            [0.9, 1.4, 2.5, 4.5],
        ),
        paragraph("False-alarm budget", H2),
        paragraph(method.false_alarm_budget),
        paragraph("Definitions", H2),
        table(["Term", "Meaning"], [[term, meaning] for term, meaning in method.definitions.items()], [1, 5]),
    ]
    return story


def render_pdf(report: Report) -> bytes:
    """The report's PDF."""
    return build_pdf(_story(report), title=f"Soak report — {report.cover.campaign_name}")


def build_pdf(story: list[Any], *, title: str) -> bytes:
    """A landscape A4 PDF of the story, with page numbers."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=title,
        author="soak",
    )
    document.build(story, canvasmaker=_NumberedCanvas)
    return buffer.getvalue()

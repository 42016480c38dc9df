"""The verdict: each acceptance section of the plan judged by the findings its detectors produced.

The report re-judges nothing. A section fails when one of its detectors raised a critical finding, is
conditional on a warning, and passes otherwise; the measured column quotes the store's figures beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from soak.findings.schemas import FindingOut
from soak.plan import Acceptance
from soak.report.model import NOT_MEASURED, Criterion, CriterionStatus, DeviceFigures, Verdict

MAX_QUOTED_FINDINGS = 3
# Below this share of the planned duration a finished campaign's verdict says that it ended early.
MIN_FULL_RUN_SHARE = 0.99


@dataclass(frozen=True)
class Section:
    """One `acceptance:` section: its title, the finding kinds its detectors raise, and how to word it."""

    key: str
    title: str
    kinds: frozenset[str]
    rule: str
    threshold: Callable[[Acceptance], str]
    measured: Callable[[list[DeviceFigures], list[FindingOut]], str]


def _worst(
    devices: list[DeviceFigures], value: Callable[[DeviceFigures], float | None], *, low: bool, unit: str
) -> str:
    pairs = [(figure, device.device) for device in devices if (figure := value(device)) is not None]
    if not pairs:
        return NOT_MEASURED
    figure, device = min(pairs) if low else max(pairs)
    return f"{figure:.3g} {unit} on {device}"


def _leak_measured(devices: list[DeviceFigures], _: list[FindingOut]) -> str:
    device = _worst(devices, lambda d: d.device_memory_leak_mib_per_hour, low=False, unit="MiB/h")
    host = _worst(devices, lambda d: d.host_memory_leak_mib_per_hour, low=False, unit="MiB/h")
    return f"steepest campaign-long trend of device memory {device}, of host RSS {host}"


def _thermal_measured(devices: list[DeviceFigures], _: list[FindingOut]) -> str:
    margin = _worst(devices, lambda d: d.min_temperature_margin_c, low=True, unit="°C")
    hottest = _worst(devices, lambda d: d.max_temperature_c, low=False, unit="°C")
    throttled = _worst(
        devices,
        lambda d: max(
            (share for reason, share in d.throttle_residency.items() if "power_cap" not in reason), default=None
        ),
        low=False,
        unit="of the time",
    )
    return f"least margin {margin}; hottest {hottest}; highest non-power-cap throttle residency {throttled}"


def _throughput_measured(devices: list[DeviceFigures], _: list[FindingOut]) -> str:
    worst = _worst(
        devices,
        lambda d: min((t.drift_percent for t in d.throughput if t.drift_percent is not None), default=None),
        low=True,
        unit="%",
    )
    return f"largest change over the campaign {worst}"


def _driver_errors_measured(devices: list[DeviceFigures], _: list[FindingOut]) -> str:
    totals: dict[str, int] = {}
    for device in devices:
        for severity, count in device.driver_errors_by_severity.items():
            totals[severity] = totals.get(severity, 0) + count
    return ", ".join(f"{count} {severity}" for severity, count in sorted(totals.items())) or "no driver error"


def _sdc_measured(devices: list[DeviceFigures], _: list[FindingOut]) -> str:
    return f"{sum(device.sdc_events for device in devices)} wrong result(s)"


def _findings_measured(noun: str) -> Callable[[list[DeviceFigures], list[FindingOut]], str]:
    def measured(_: list[DeviceFigures], findings: list[FindingOut]) -> str:
        return f"{len(findings)} {noun} finding(s)" if findings else f"no {noun} finding"

    return measured


def _liveness_measured(devices: list[DeviceFigures], findings: list[FindingOut]) -> str:
    hangs = sum(device.hangs for device in devices)
    restarts = sum(device.restarts for device in devices)
    lost = sum(finding.kind == "node_lost" for finding in findings)
    return f"{hangs} hang(s), {restarts} worker restart(s), {lost} node(s) lost"


SECTIONS: tuple[Section, ...] = (
    Section(
        "leak",
        "Memory leaks",
        frozenset({"memory_leak", "allocator_growth"}),
        "Theil–Sen slope of memory, open files and threads on trailing windows, Mann–Kendall significance",
        lambda a: (
            f"device memory ≤ {a.leak.max_device_rate_percent_per_hour:g} % of capacity/h, host RSS ≤ "
            f"{a.leak.max_host_rate_mib_per_hour:g} MiB/h (growth ≥ {a.leak.min_growth_mib:g} MiB, "
            f"p < {a.leak.significance:g})"
        ),
        _leak_measured,
    ),
    Section(
        "thermal",
        "Thermal and throttling",
        frozenset({"throttling", "thermal_margin", "sustained_tax"}),
        "throttle residency by reason, margin to the slowdown temperature and its trend, sustained vs burst",
        lambda a: (
            f"throttle residency ≤ {a.thermal.max_throttle_residency:.0%} of busy time, margin ≥ "
            f"{a.thermal.min_temperature_margin_c:g} °C, sustained tax ≤ {a.thermal.max_sustained_tax:.0%}"
        ),
        _thermal_measured,
    ),
    Section(
        "throughput",
        "Throughput stability",
        frozenset({"throughput_drift", "slow_peer"}),
        "one-sided CUSUM against each device's own baseline; robust z-score against identical peers",
        lambda a: (
            f"sustained ≥ {a.throughput.min_sustained_throughput_ratio:.0%} of own baseline and of peers "
            f"(drops from {a.throughput.min_detectable_drop:.0%} detected)"
        ),
        _throughput_measured,
    ),
    Section(
        "driver_errors",
        "Driver errors",
        frozenset({"driver_error"}),
        "FAIL-class codes counted, WARN-class codes by daily rate and bursts, informational codes never",
        lambda a: (
            f"FAIL-class ≤ {a.driver_errors.max_fail}; WARN-class ≤ {a.driver_errors.max_warn_per_day}/day per "
            f"code and < {a.driver_errors.burst_count} in {a.driver_errors.burst_window_s:g} s"
        ),
        _driver_errors_measured,
    ),
    Section(
        "memory_health",
        "Memory and PCIe health",
        frozenset({"memory_health", "pcie_health"}),
        "DCGM-like limits on ECC, remapped rows, retired pages; PCIe replays and link degradation",
        lambda a: (
            f"no uncorrectable ECC; remapped rows ≤ {a.memory_health.uncorrectable_remapped_rows_limit}, retired "
            f"pages ≤ {a.memory_health.retired_pages_limit}, corrected ECC ≤ "
            f"{a.memory_health.max_corrected_ecc_errors_per_day:g}/day"
        ),
        _findings_measured("memory or PCIe"),
    ),
    Section(
        "stack_change",
        "Driver and firmware changes",
        frozenset({"stack_change", "stack_regression"}),
        "throughput and error rate before and after a version change (Mann–Whitney on block means)",
        lambda a: f"regression after a change ≤ {a.stack_change.max_regression_fraction:.0%}",
        _findings_measured("stack change"),
    ),
    Section(
        "liveness",
        "Liveness",
        frozenset({"worker_hang", "crash_loop", "node_lost"}),
        "heartbeats inside workload runs, restarts per hour, node silence",
        lambda a: (
            f"no hang ({a.liveness.hang_intervals} silent intervals), ≤ {a.liveness.max_restarts_per_hour} "
            f"restarts/h, node silent < {a.liveness.node_lost_after_s:g} s"
        ),
        _liveness_measured,
    ),
    Section(
        "sdc",
        "Silent data corruption",
        frozenset({"silent_data_corruption"}),
        "results checked against a reference; any wrong result beyond the limit",
        lambda a: f"≤ {a.sdc.max_events} wrong result(s)",
        _sdc_measured,
    ),
)
SECTION_OF_KIND = {kind: section.key for section in SECTIONS for kind in section.kinds}


def _with_findings(measured: str, breaking: list[FindingOut]) -> str:
    """The figures, then what each breaking finding measured (its sentence up to the first semicolon)."""
    if not breaking:
        return measured
    quoted = [f"{finding.device or '(campaign)'}: {finding.explanation.split(';')[0]}" for finding in breaking]
    more = f"; and {len(quoted) - MAX_QUOTED_FINDINGS} more" if len(quoted) > MAX_QUOTED_FINDINGS else ""
    return f"{measured}. Findings: " + "; ".join(quoted[:MAX_QUOTED_FINDINGS]) + more


def judge(
    *, acceptance: Acceptance, devices: list[DeviceFigures], findings: list[FindingOut], measured: bool
) -> tuple[Verdict, list[Criterion]]:
    """The verdict and one criterion per acceptance section, from the stored findings.

    A campaign with no telemetry at all cannot pass: with nothing measured it is CONDITIONAL at best.
    """
    criteria = []
    for section in SECTIONS:
        own = [finding for finding in findings if finding.kind in section.kinds]
        breaking = [finding for finding in own if finding.severity in ("critical", "warning")]
        if any(finding.severity == "critical" for finding in breaking):
            status = CriterionStatus.FAIL
        elif breaking:
            status = CriterionStatus.CONDITIONAL
        else:
            status = CriterionStatus.PASS
        criteria.append(
            Criterion(
                section=section.key,
                name=section.title,
                threshold=section.threshold(acceptance),
                measured=_with_findings(section.measured(devices, own), breaking),
                status=status,
                failing_devices=sorted({finding.device or "(campaign)" for finding in breaking}),
                finding_ids=[finding.id for finding in breaking],
            )
        )
    statuses = {criterion.status for criterion in criteria}
    if CriterionStatus.FAIL in statuses:
        return Verdict.FAIL, criteria
    if CriterionStatus.CONDITIONAL in statuses or not measured:
        return Verdict.CONDITIONAL, criteria
    return Verdict.PASS, criteria


def verdict_reason(
    verdict: Verdict, criteria: list[Criterion], *, interim: bool, measured: bool, ran_share: float
) -> str:
    """One or two sentences a purchaser can quote."""
    failing = [criterion.name for criterion in criteria if criterion.status is CriterionStatus.FAIL]
    conditional = [criterion.name for criterion in criteria if criterion.status is CriterionStatus.CONDITIONAL]
    prefix = "Interim (the campaign is still running): " if interim else ""
    # A campaign that ended early was judged on less than the plan asked for; a purchaser must see that.
    short = (
        f" It ran {ran_share:.0%} of its planned duration." if not interim and ran_share < MIN_FULL_RUN_SHARE else ""
    )
    if verdict is Verdict.FAIL:
        return f"{prefix}critical findings break {', '.join(failing)}.{short}"
    if not measured:
        return f"{prefix}no telemetry is stored for this campaign: nothing was measured, so nothing can pass.{short}"
    if verdict is Verdict.CONDITIONAL:
        return f"{prefix}no critical finding; warnings on {', '.join(conditional)} need a decision.{short}"
    return f"{prefix}every acceptance criterion holds: no warning or critical finding.{short}"

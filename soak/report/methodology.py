"""The methodology appendix: the plan's timing and workloads, each detector's thresholds, the false-alarm budget."""

from __future__ import annotations

from collections.abc import Callable

from soak.plan import Plan
from soak.report.figures import BURST_PERCENTILE, DRIFT_SHARE, RESTART_EVENTS
from soak.report.model import DetectorMethod, Methodology, WorkloadMethod
from soak.report.tco import CONFIDENCE
from soak.report.verdict import SECTIONS

FALSE_ALARM_BUDGET = (
    "At most one false alarm (a warning or critical finding on a healthy device) per 100 healthy device-weeks "
    "across all detectors together, each detector tuned to about a tenth of it; the drift detector's share is set "
    "by in_control_arl_days. benchmarks/detection_quality.py measures the budget spent on a simulated fleet "
    "(docs/detectors.md, docs/benchmarks.md)."
)


def methodology(plan: Plan, *, unit_of: Callable[[str], str]) -> Methodology:
    """What the campaign ran and how it was judged."""
    acceptance = plan.acceptance
    return Methodology(
        sample_interval_s=plan.sample_interval.total_seconds(),
        warmup_s=plan.warmup.total_seconds(),
        rotation_s=plan.rotation.total_seconds(),
        slot_warmup_s=plan.slot_warmup.total_seconds(),
        workloads=[
            WorkloadMethod(
                name=spec.name,
                unit=unit_of(spec.name),
                weight=spec.weight,
                duty_cycle=spec.duty_cycle,
                precision=spec.precision.value,
                batch_size=spec.batch_size,
                params=spec.params,
            )
            for spec in plan.workloads
        ],
        detectors=[
            DetectorMethod(
                section=section.key,
                finding_kinds=sorted(section.kinds),
                rule=section.rule,
                thresholds=getattr(acceptance, section.key).model_dump(mode="json"),
            )
            for section in SECTIONS
        ],
        false_alarm_budget=FALSE_ALARM_BUDGET,
        definitions={
            "sustained throughput": "mean of the step means after the campaign's warm-up",
            "burst throughput": f"{BURST_PERCENTILE:g}th percentile of the step means after warm-up",
            "coefficient of variation": "standard deviation of the step means over their mean",
            "drift": f"change from the mean of the first {DRIFT_SHARE:.0%} of the steps to that of the last ones",
            "leak rate": "Theil–Sen slope of the step means after warm-up, MiB per hour",
            "temperature margin": "smallest step mean of the slowdown temperature minus the die temperature",
            "energy per unit of work": (
                "mean board power over the steps in which the workload reported throughput, divided by its mean "
                "throughput there (J per GFLOP for GEMM; J per TFLOP is 1000 times that)"
            ),
            "hours under load": "length of the device's workload slots, idle slots excluded",
            "restarts": f"events {', '.join(sorted(RESTART_EVENTS))}, after each of which the worker is restarted",
            "MTBF": (
                f"hours under load over interruptions (restarts and lost nodes), with a two-sided {CONFIDENCE:.0%} "
                "chi-square interval for a time-truncated test"
            ),
            "verdict": (
                "FAIL when a detector raised a critical finding, CONDITIONAL when only warnings (or when no telemetry "
                "was stored at all), PASS otherwise; informational findings never change it"
            ),
        },
        plan_description=plan.description,
    )

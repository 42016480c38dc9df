"""Cost-of-ownership inputs: the performance tax of each device, energy per unit of work, and availability."""

from __future__ import annotations

from scipy import stats

from soak.report.model import Availability, CostInputs, DeviceCost, DeviceFigures

CONFIDENCE = 0.90


def performance_tax(devices: list[DeviceFigures]) -> list[DeviceCost]:
    """Per device and workload: how much slower than the fastest device of its vendor and model, and how much more
    time that costs. A device X % slower needs X / (100 - X) × 100 % more time for the same work.
    """
    best: dict[tuple[str, str, str], float] = {}
    for device in devices:
        for figures in device.throughput:
            group = (figures.workload, device.vendor, device.model)
            best[group] = max(best.get(group, 0.0), figures.sustained)
    costs = []
    for device in devices:
        for figures in device.throughput:
            top = best[(figures.workload, device.vendor, device.model)]
            slower = 100.0 * (1.0 - figures.sustained / top) if top > 0 else 0.0
            costs.append(
                DeviceCost(
                    device=device.device,
                    workload=figures.workload,
                    unit=figures.unit,
                    work_unit=figures.work_unit,
                    slower_than_best_percent=slower,
                    more_time_percent=100.0 * slower / (100.0 - slower) if slower < 100.0 else float("inf"),
                    joules_per_unit=figures.joules_per_unit,
                )
            )
    return costs


def mtbf_interval_h(device_hours: float, failures: int, confidence: float) -> tuple[float | None, float | None]:
    """Two-sided chi-square confidence interval of the MTBF of a time-truncated test (None: unbounded)."""
    alpha = 1.0 - confidence
    lower = 2.0 * device_hours / float(stats.chi2.ppf(1.0 - alpha / 2.0, 2 * failures + 2))
    upper = 2.0 * device_hours / float(stats.chi2.ppf(alpha / 2.0, 2 * failures)) if failures > 0 else None
    return lower, upper


def availability(devices: list[DeviceFigures], *, campaign_hours: float, node_losses: int) -> Availability:
    """Uptime (hours under load over device-hours) and the MTBF, counting restarts and lost nodes as failures."""
    device_hours = campaign_hours * len(devices)
    loaded = sum(device.hours_under_load for device in devices)
    interruptions = sum(device.restarts for device in devices) + node_losses
    lower, upper = mtbf_interval_h(loaded, interruptions, CONFIDENCE) if loaded > 0 else (None, None)
    return Availability(
        device_hours=device_hours,
        device_hours_under_load=loaded,
        uptime_share=min(loaded / device_hours, 1.0) if device_hours > 0 else 0.0,
        interruptions=interruptions,
        mtbf_h=loaded / interruptions if interruptions else None,
        mtbf_lower_h=lower,
        mtbf_upper_h=upper,
        confidence=CONFIDENCE,
    )


def cost_inputs(devices: list[DeviceFigures], *, campaign_hours: float, node_losses: int) -> CostInputs:
    """Everything a TCO model takes from this campaign."""
    return CostInputs(
        reference="the device of the same vendor and model with the highest sustained throughput of each workload",
        devices=performance_tax(devices),
        availability=availability(devices, campaign_hours=campaign_hours, node_losses=node_losses),
    )

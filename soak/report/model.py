"""The soak report as a document: every figure the HTML, the PDF and the JSON show; the JSON is its dump."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

REPORT_SCHEMA_VERSION = 1
# What the report says where the store lacks a figure, rather than inventing one.
NOT_MEASURED = "not measured"


class Verdict(StrEnum):
    """The campaign's outcome against its plan's acceptance criteria."""

    PASS = "PASS"
    CONDITIONAL = "CONDITIONAL"
    FAIL = "FAIL"


class CriterionStatus(StrEnum):
    """One criterion's outcome: a critical finding fails it, a warning makes it conditional."""

    PASS = "pass"
    CONDITIONAL = "conditional"
    FAIL = "fail"


class DeviceFacts(BaseModel):
    """One device as the fleet knows it: identity, driver, firmware and the software stack its worker reported."""

    name: str
    node: str
    vendor: str
    model: str
    backend: str
    uuid: str | None
    serial: str | None
    driver_version: str | None
    firmware_version: str | None
    memory_total_bytes: int | None
    simulated: bool
    # Component → version, as the worker reported it at start (torch, the vendor extension, the stack, ...).
    software: dict[str, str]


class FleetGroup(BaseModel):
    """Devices of one vendor and model, with the versions they ran."""

    vendor: str
    model: str
    devices: int
    nodes: list[str]
    drivers: list[str]
    firmware: list[str]
    software: dict[str, list[str]]


class Cover(BaseModel):
    """Who, what and when: campaign, dates, plan digest and the fleet."""

    campaign_id: int
    campaign_name: str
    state: str
    interim: bool
    imported: bool
    started_at: str | None
    ended_at: str | None
    duration_h: float
    planned_duration_h: float
    plan_digest: str
    generated_at: str
    soak_version: str
    nodes: list[str]
    fleet: list[FleetGroup]
    devices: list[DeviceFacts]


class Criterion(BaseModel):
    """One acceptance criterion: what the plan allows, what was measured, which devices break it."""

    section: str
    name: str
    threshold: str
    measured: str
    status: CriterionStatus
    failing_devices: list[str]
    finding_ids: list[int]


class WorkloadThroughput(BaseModel):
    """One workload's throughput on one device over the campaign (after warm-up)."""

    workload: str
    unit: str
    # One unit of work in that unit: GFLOP for GFLOP/s, token for tokens/s.
    work_unit: str
    sustained: float
    burst: float
    sustained_share_of_burst: float
    coefficient_of_variation: float
    drift_percent: float | None
    # Energy per unit of work: joules per unit (J per GFLOP for GEMM); None when no power was recorded.
    joules_per_unit: float | None
    joules_per_tflop: float | None


class DeviceFigures(BaseModel):
    """The per-device table: load, throughput, memory, thermal, energy and error figures; None is "not measured"."""

    device: str
    node: str
    vendor: str
    model: str
    hours_under_load: float
    throughput: list[WorkloadThroughput]
    device_memory_leak_mib_per_hour: float | None
    host_memory_leak_mib_per_hour: float | None
    max_temperature_c: float | None
    min_temperature_margin_c: float | None
    mean_power_w: float | None
    energy_kwh: float | None
    throttle_residency: dict[str, float]
    driver_errors_by_severity: dict[str, int]
    sdc_events: int
    restarts: int
    hangs: int
    fallback_ops: list[str]
    unsupported_ops: list[str]


class FindingEntry(BaseModel):
    """A finding as the report lists it, with campaign-relative times for the timeline."""

    id: int
    device: str | None
    kind: str
    subject: str
    severity: str
    section: str | None
    onset_s: float
    detected_s: float
    last_seen_s: float
    onset_h: float
    detected_h: float
    explanation: str
    evidence: dict[str, Any]


class CampaignAction(BaseModel):
    """One entry of the campaign's audit log: who did what, when, and whether it was allowed."""

    at: str
    actor: str
    role: str
    action: str
    outcome: str
    detail: str


class DeviceCost(BaseModel):
    """One device's cost-of-ownership inputs."""

    device: str
    workload: str
    unit: str
    work_unit: str
    slower_than_best_percent: float
    more_time_percent: float
    joules_per_unit: float | None


class Availability(BaseModel):
    """Uptime and an MTBF estimate from the campaign's interruptions, with its two-sided confidence interval."""

    device_hours: float
    device_hours_under_load: float
    uptime_share: float
    interruptions: int
    mtbf_h: float | None
    mtbf_lower_h: float | None
    mtbf_upper_h: float | None
    confidence: float


class CostInputs(BaseModel):
    """Performance tax, energy per unit of work and availability: what a TCO model takes."""

    reference: str
    devices: list[DeviceCost]
    availability: Availability


class Plot(BaseModel):
    """One figure: a title, what it shows, and its PNG (base64) — the HTML embeds it, the PDF draws it."""

    key: str
    title: str
    caption: str
    png_base64: str = Field(repr=False)


class DetectorMethod(BaseModel):
    """One detector's plan section with the thresholds the campaign ran under."""

    section: str
    finding_kinds: list[str]
    rule: str
    thresholds: dict[str, Any]


class WorkloadMethod(BaseModel):
    """One workload of the mix as the plan ran it."""

    name: str
    unit: str
    weight: float
    duty_cycle: float
    precision: str
    batch_size: int
    params: dict[str, Any]


class Methodology(BaseModel):
    """How the figures came about: the plan's timing, workloads, detectors and the false-alarm budget."""

    sample_interval_s: float
    warmup_s: float
    rotation_s: float
    slot_warmup_s: float
    workloads: list[WorkloadMethod]
    detectors: list[DetectorMethod]
    false_alarm_budget: str
    definitions: dict[str, str]
    plan_description: str


class Report(BaseModel):
    """The whole report."""

    schema_version: int = REPORT_SCHEMA_VERSION
    cover: Cover
    verdict: Verdict
    verdict_reason: str
    criteria: list[Criterion]
    devices: list[DeviceFigures]
    findings: list[FindingEntry]
    actions: list[CampaignAction]
    cost: CostInputs
    methodology: Methodology
    plots: list[Plot]
    plots_not_measured: list[str]

    def document(self) -> dict[str, Any]:
        """The JSON form without plot images (those are in the HTML and the PDF)."""
        data = self.model_dump(mode="json")
        data["plots"] = [{key: plot[key] for key in ("key", "title", "caption")} for plot in data["plots"]]
        return data

"""The campaign plan: the one contract users write by hand (YAML or JSON)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from soak.analysis.drift import DriftLimits
from soak.analysis.driver_errors import DriverErrorLimits
from soak.analysis.leak import LeakLimits
from soak.analysis.liveness import LivenessLimits
from soak.analysis.memory_health import MemoryHealthLimits
from soak.analysis.sdc import SdcLimits
from soak.analysis.stack_change import StackChangeLimits
from soak.analysis.thermal import ThermalLimits

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_LONGEST_S = 1e12
# Bounds on what one plan may ask for: far above any real campaign, low enough that no plan exhausts the controller.
MAX_DURATION = timedelta(days=366)
MAX_DEVICES = 100_000
MAX_SELECTORS = 256
MAX_WORKLOADS = 64
MAX_FAULTS = 1024


def parse_duration(value: Any) -> Any:
    """Turn `90s`, `30m`, `36h`, `14d` (or a number of seconds) into a timedelta; leave others to pydantic."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 30m, 36h or 14d")
    if isinstance(value, int | float):
        return _timedelta(float(value), value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"{value!r} is negative; a duration must be positive, such as 90s, 30m, 36h or 14d")
        match = _DURATION_RE.match(text)
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write a number and a unit (ms, s, m, h, d, w), e.g. 36h")
        number, unit = match.groups()
        return _timedelta(float(number) * _UNIT_SECONDS[unit or "s"], value)
    raise ValueError("expected a duration such as 90s, 30m, 36h or 14d")


def _timedelta(seconds: float, value: Any) -> timedelta:
    # timedelta raises OverflowError past about 2.7 million years, which pydantic would not report as a field error.
    if not math.isfinite(seconds) or abs(seconds) > _LONGEST_S:
        raise ValueError(f"{value!r} is not a duration soak can hold; write one such as 90s, 30m, 36h or 14d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The compact form a plan is written in: `36h`, `90s`, `1.5s`; parse_duration reads it back."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        count = seconds / _UNIT_SECONDS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    # Fixed-point to the microsecond (timedelta's resolution): `g` would drop digits or write 1e+06s.
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


class Precision(StrEnum):
    """Numeric precision a workload computes in."""

    FP64 = "fp64"
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DeviceSelector(_Strict):
    """Which devices a campaign takes: real ones by vendor/model/node, or `simulated: N`."""

    vendor: str | None = Field(default=None, max_length=64, description="e.g. nvidia, huawei, cpu")
    model: str | None = Field(default=None, max_length=128, description="substring of the model name, e.g. H200")
    count: int | None = Field(default=None, ge=1, le=MAX_DEVICES, description="how many; all that match when omitted")
    nodes: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=MAX_DEVICES, description="only these node names"
    )
    simulated: int | None = Field(default=None, ge=1, le=MAX_DEVICES, description="take N simulated accelerators")

    @model_validator(mode="after")
    def _one_kind(self) -> DeviceSelector:
        if self.simulated is not None and (self.vendor or self.model or self.count is not None):
            raise ValueError("use either `simulated: N` or vendor/model/count, not both")
        if self.simulated is None and not (self.vendor or self.model or self.nodes):
            raise ValueError("name a vendor, a model, nodes, or `simulated: N`")
        return self

    @property
    def wanted(self) -> int | None:
        """Number of devices asked for; None means every match."""
        return self.simulated if self.simulated is not None else self.count


class WorkloadSpec(_Strict):
    """One entry of the workload mix."""

    name: str = Field(max_length=64, description="a registered workload, e.g. gemm or train")
    weight: float = Field(default=1.0, gt=0, description="share of rotation slots")
    duty_cycle: float = Field(default=1.0, gt=0, le=1, description="fraction of each interval under load")
    precision: Precision = Precision.FP32
    batch_size: int = Field(default=64, ge=1, le=1_048_576)
    params: dict[str, Any] = Field(default_factory=dict, description="workload-specific settings")

    @field_validator("name")
    @classmethod
    def _known_workload(cls, name: str) -> str:
        from soak.workloads.registry import workload_names

        known = workload_names()
        if name not in known:
            raise ValueError(f"unknown workload {name!r}; known: {', '.join(sorted(known))}")
        return name

    @field_validator("params")
    @classmethod
    def _params_fit_workload(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from soak.workloads.registry import load_workload

        # A field validator, so that a bad parameter is reported as `workloads[N].params.<key>`.
        name = info.data.get("name")
        if name is not None:  # an unknown workload is already reported on `name`
            load_workload(name).Params.model_validate(params)
        return params


class _FaultBase(_Strict):
    device: str = Field(max_length=32, description="simulated device name, e.g. sim3")
    start: Duration = Field(default=timedelta(0), description="campaign time at which the fault begins")

    @field_validator("device")
    @classmethod
    def _simulated_device(cls, device: str) -> str:
        if re.fullmatch(r"sim\d+", device) is None:
            raise ValueError(
                f"{device!r} is not a simulated device; faults are injected into simulated devices "
                "only, named sim0, sim1, ..."
            )
        return device

    @field_validator("start")
    @classmethod
    def _not_negative(cls, start: timedelta) -> timedelta:
        if start < timedelta(0):
            raise ValueError("must not be negative")
        return start


class MemoryLeakFault(_FaultBase):
    """Memory that grows and is never freed: in the worker's host RSS or in device memory."""

    kind: Literal["memory_leak"]
    target: Literal["host", "device"] = "device"
    rate_mib_per_hour: float = Field(gt=0)


class ThroughputDecayFault(_FaultBase):
    """Throughput that quietly falls by a percentage of its initial value each hour."""

    kind: Literal["throughput_decay"]
    rate_percent_per_hour: float = Field(gt=0, le=100_000)


class ThermalRunawayFault(_FaultBase):
    """Cooling that degrades: temperature climbs until the device throttles."""

    kind: Literal["thermal_runaway"]
    rate_c_per_minute: float = Field(gt=0, le=60)


class DriverErrorFault(_FaultBase):
    """Driver errors (NVIDIA XID codes) arriving as a Poisson process."""

    kind: Literal["driver_errors"]
    xid: int = Field(default=79, ge=1, le=999)
    rate_per_hour: float = Field(gt=0)


class HangFault(_FaultBase):
    """The device stops making progress once, at `start`, until its worker is restarted."""

    kind: Literal["hang"]


class SilentDataCorruptionFault(_FaultBase):
    """Results that are wrong without any error, as a Poisson process."""

    kind: Literal["sdc"]
    rate_per_hour: float = Field(gt=0)


Fault = Annotated[
    MemoryLeakFault
    | ThroughputDecayFault
    | ThermalRunawayFault
    | DriverErrorFault
    | HangFault
    | SilentDataCorruptionFault,
    Field(discriminator="kind"),
]


class Acceptance(_Strict):
    """Pass/fail criteria and detector sensitivity, one section per detector; every field has a default.

    docs/detectors.md says what each detector does with its section.
    """

    leak: LeakLimits = LeakLimits()
    thermal: ThermalLimits = ThermalLimits()
    throughput: DriftLimits = DriftLimits()
    driver_errors: DriverErrorLimits = DriverErrorLimits()
    memory_health: MemoryHealthLimits = MemoryHealthLimits()
    stack_change: StackChangeLimits = StackChangeLimits()
    liveness: LivenessLimits = LivenessLimits()
    sdc: SdcLimits = SdcLimits()


class Plan(_Strict):
    """A soak campaign: what to run, on which devices, for how long, and what counts as a pass."""

    name: str = Field(min_length=1, max_length=120, pattern=r"^[\w .:+-]+$")
    description: str = Field(default="", max_length=4000)
    duration: Duration
    # Defaults are checked against the fields before them too: a 1m plan with the default warm-up is refused
    # when it is submitted, not when its runner reads it back.
    warmup: Duration = Field(default=timedelta(seconds=60), validate_default=True)
    sample_interval: Duration = Field(default=timedelta(seconds=1), validate_default=True)
    rotation: Duration = Field(
        default=timedelta(minutes=5), validate_default=True, description="length of one workload-mix slot"
    )
    slot_warmup: Duration = Field(
        default=timedelta(seconds=10),
        validate_default=True,
        description="start of each slot left out of statistics while clocks settle",
    )
    devices: list[DeviceSelector] = Field(min_length=1, max_length=MAX_SELECTORS)
    workloads: list[WorkloadSpec] = Field(min_length=1, max_length=MAX_WORKLOADS)
    faults: list[Fault] = Field(default_factory=list, max_length=MAX_FAULTS)
    acceptance: Acceptance = Acceptance()
    seed: int = Field(default=0, ge=0, le=2**63 - 1)

    # Cross-field checks live on the later field (fields validate in order), so each error names its field.

    @field_validator("devices", "workloads", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("duration", "sample_interval", "rotation")
    @classmethod
    def _positive(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive, e.g. 90s, 30m, 36h or 14d")
        if value > MAX_DURATION:
            raise ValueError(
                f"{format_duration(value)} is longer than {format_duration(MAX_DURATION)}, the most a plan runs"
            )
        duration, warmup = info.data.get("duration"), info.data.get("warmup")
        fits = duration is None or warmup is None or value * 10 <= duration - warmup
        if info.field_name == "sample_interval" and not fits:
            raise ValueError(
                f"{format_duration(value)} leaves fewer than 10 samples after warm-up; shorten it or the warm-up"
            )
        return value

    @field_validator("warmup", "slot_warmup")
    @classmethod
    def _warmup_shorter(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        limit_name = "duration" if info.field_name == "warmup" else "rotation"
        limit = info.data.get(limit_name)
        if limit is not None and value >= limit:
            raise ValueError(
                f"{format_duration(value)} must be shorter than {limit_name} ({format_duration(limit)}); "
                f"set a shorter {info.field_name}"
            )
        return value

    @property
    def simulated_devices(self) -> int:
        """Total simulated devices the plan asks for."""
        return sum(selector.simulated or 0 for selector in self.devices)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form; identifies the plan in reports."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class PlanError(ValueError):
    """A plan that cannot be used; `problems` holds one `field.path: what is wrong` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid plan:\n" + "\n".join(f"  {line}" for line in problems))
        self.problems = problems


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `workloads[1].precision`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(plan)"


def describe_errors(error: ValidationError) -> list[str]:
    """One `field.path: what is wrong` line per problem, with the rejected input where it helps."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = _without_union_tags(tuple(item["loc"]))
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "enum":
            expected = item.get("ctx", {}).get("expected", "")
            message = f"{item['input']!r} is not one of {expected}"
        elif item["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against the plan reference"
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{field_path(loc)}: {message}")
    return lines


def _without_union_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A fault's location without the fault kind pydantic inserts (`faults[0].memory_leak.start`), and only there:
    a field of any other name stays, so that an unknown field called `hang` is still named."""
    return tuple(
        part
        for position, part in enumerate(loc)
        if not (
            position >= 2
            and loc[position - 2] == "faults"
            and isinstance(loc[position - 1], int)
            and part in _FAULT_KINDS
        )
    )


_FAULT_KINDS = {"memory_leak", "throughput_decay", "thermal_runaway", "driver_errors", "hang", "sdc"}


def parse_plan(data: Any) -> Plan:
    """Validate a plan given as a mapping; raise PlanError naming every bad field."""
    if not isinstance(data, dict):
        raise PlanError(["(plan): expected a mapping of fields such as name, duration, devices, workloads"])
    try:
        return Plan.model_validate(data)
    except ValidationError as error:
        raise PlanError(describe_errors(error)) from None


def load_plan(path: Path) -> Plan:
    """Read a plan from a YAML or JSON file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise PlanError([f"(file): cannot read {path}: {error.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PlanError([f"(file): {path} is not valid YAML or JSON: {error}"]) from None
    return parse_plan(data)

"""What every vendor-SMI parser produces, and how a reading becomes samples, a device and events.

Health status samples: 0 ok, 1 warning, 2 alarm or critical (the device needs attention now).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from agents.collectors.base import CollectContext, Collected
from agents.collectors.smi_command import Runner, SmiRunner
from agents.config import AgentSettings
from soak.nodes.schemas import DeviceIn

log = logging.getLogger(__name__)

MIB_BYTES = 1024 * 1024
HEALTH_OK = 0
HEALTH_WARNING = 1
HEALTH_CRITICAL = 2

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_RULE_CHARACTERS = set("+-=| ")
# A string member followed by another with no comma between them, as some hy-smi releases print.
_MISSING_COMMA = re.compile(r'"(\s*)"(?=(?:[^"\\]|\\.)*"\s*:)')
_NOT_AVAILABLE = {"", "-", "na", "n/a", "[n/a]", "not supported", "[not supported]", "unknown", "none"}


@dataclass(frozen=True)
class SmiFault:
    """One fault a device reports, in the shape of a driver_error event."""

    code: int | None
    severity: str  # info | warning | critical
    message: str
    raw: str


@dataclass
class SmiReading:
    """One device as one CLI call saw it; None is 'this output does not say'."""

    index: int
    model: str | None = None
    uuid: str | None = None
    serial: str | None = None
    bus_id: str | None = None
    driver_version: str | None = None
    firmware_version: str | None = None
    temperature_c: float | None = None
    memory_temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_j: float | None = None
    sm_clock_mhz: float | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    health_status: int | None = None
    ecc_errors: dict[str, float] = field(default_factory=dict)
    faults: list[SmiFault] = field(default_factory=list)

    def device(self, name: str, *, backend: str, vendor: str, default_model: str) -> DeviceIn:
        """The device as the controller registers it."""
        total = self.memory_total_bytes
        return DeviceIn(
            name=name,
            backend=backend,
            index=self.index,
            vendor=vendor,
            model=(self.model or default_model)[:128],
            uuid=_clip(self.uuid, 128),
            serial=_clip(self.serial, 128),
            bus_id=_clip(self.bus_id, 64),
            driver_version=_clip(self.driver_version, 64),
            firmware_version=_clip(self.firmware_version, 64),
            memory_total_bytes=int(total) if total is not None else None,
        )

    def add_samples(self, collected: Collected, time_s: float, device: str) -> None:
        """Every value this reading has, under the metric names the simulated devices use."""
        for metric, value in (
            ("device.temperature_c", self.temperature_c),
            ("device.memory_temperature_c", self.memory_temperature_c),
            ("device.power_w", self.power_w),
            ("device.power_limit_w", self.power_limit_w),
            ("device.energy_j", self.energy_j),
            ("device.sm_clock_mhz", self.sm_clock_mhz),
            ("device.utilization_ratio", self.utilization_ratio),
            ("device.memory_used_bytes", self.memory_used_bytes),
            ("device.memory_total_bytes", self.memory_total_bytes),
            ("device.health_status", self.health_status),
        ):
            if value is not None:
                collected.sample(time_s, metric, value, device)
        for name, count in sorted(self.ecc_errors.items()):
            collected.sample(time_s, f"device.ecc_{name}", count, device)


def number(text: object) -> float | None:
    """The first number in a field ('250 W', '32C', '[N/A]', 17), or None when it holds none."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return float(text)
    if not isinstance(text, str) or text.strip().lower() in _NOT_AVAILABLE:
        return None
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def text_or_none(value: object) -> str | None:
    """A string field, with the vendors' many spellings of 'not available' turned into None."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _NOT_AVAILABLE else text


def percent_ratio(text: object) -> float | None:
    """A percentage field as a ratio in 0..1."""
    value = number(text)
    return None if value is None else value / 100.0


def mib_bytes(text: object) -> float | None:
    """A field in MiB as bytes."""
    value = number(text)
    return None if value is None else value * MIB_BYTES


def json_document(text: str) -> object | None:
    """The JSON value in a CLI's output, past banner and error lines, with missing member commas restored."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if not line.lstrip().startswith(("{", "[")):
            continue
        body = "\n".join(lines[start:])
        body = body[: max(body.rfind("}"), body.rfind("]")) + 1]
        for candidate in (body, _MISSING_COMMA.sub(r'",\1"', body)):
            try:
                document: object = json.loads(candidate)
            except json.JSONDecodeError:
                continue
            return document
    log.debug("no JSON document in %d characters of output", len(text))
    return None


def row_pairs(text: str, *, stop: str, is_header: Callable[[list[str]], bool]) -> Iterator[tuple[list[str], list[str]]]:
    """The two-line device rows of a boxed SMI table, as cells, until the line holding stop.

    Each device's two lines sit between two rules ('+---' lines), so a malformed pair cannot shift the pairs
    after it.
    """
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and set(stripped) <= _RULE_CHARACTERS:
            pending = None
            continue
        if stop in stripped:
            return
        if not stripped.startswith("|"):
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if len(cells) < 3 or is_header(cells):
            continue
        if pending is None:
            pending = cells
        else:
            yield pending, cells
            pending = None


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value else None


class FaultTracker:
    """Turns each cycle's fault list into driver_error events when it changes, not every cycle."""

    def __init__(self) -> None:
        self._active: dict[str, dict[tuple[int | None, str], SmiFault]] = {}

    def update(self, collected: Collected, time_s: float, device: str, faults: list[SmiFault]) -> None:
        """Emit the faults that are new since the last cycle, and one info event when all have cleared."""
        current = {(fault.code, fault.message): fault for fault in faults}
        previous = self._active.get(device, {})
        for key, fault in current.items():
            if key not in previous:
                collected.events.append(_event(time_s, device, fault))
        if previous and not current:
            cleared = "; ".join(fault.raw for fault in previous.values())
            collected.events.append(_event(time_s, device, SmiFault(None, "info", "faults cleared", cleared)))
        self._active[device] = current


def _event(time_s: float, device: str, fault: SmiFault) -> dict[str, object]:
    return {
        "time_s": time_s,
        "device": device,
        "kind": "driver_error",
        "severity": fault.severity,
        "code": fault.code,
        "message": fault.message,
        "raw": fault.raw,
    }


class SmiCollector:
    """A collector that reads one vendor CLI: devices from one call, samples and fault events every cycle."""

    name: ClassVar[str]
    backend: ClassVar[str]
    vendor: ClassVar[str]
    default_model: ClassVar[str]

    def __init__(self, settings: AgentSettings, run: Runner | None = None) -> None:
        self._settings = settings
        self._run: Runner = run if run is not None else SmiRunner()
        self._faults = FaultTracker()

    def read(self, now_s: float) -> list[SmiReading]:
        """Every device the CLI reports now; [] when the CLI is absent or failed."""
        raise NotImplementedError

    def device_name(self, index: int) -> str:
        """The fleet-wide name of the device with this index on this node."""
        return f"{self._settings.node_name}/{self.backend}{index}"

    def devices(self) -> list[DeviceIn]:
        return [
            reading.device(
                self.device_name(reading.index),
                backend=self.backend,
                vendor=self.vendor,
                default_model=self.default_model,
            )
            for reading in self._read_safely(0.0)
        ]

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        collected = Collected()
        for reading in self._read_safely(now_s):
            device = self.device_name(reading.index)
            reading.add_samples(collected, now_s, device)
            self._faults.update(collected, now_s, device, reading.faults)
        return collected

    def _read_safely(self, now_s: float) -> list[SmiReading]:
        # The parsers are tolerant by design; this guard keeps a parser bug from failing the agent's cycle.
        try:
            return self.read(now_s)
        except Exception:
            log.warning("%s collector could not read its CLI this cycle", self.name, exc_info=True)
            return []

"""`nvidia-smi --query-gpu=... --format=csv -l N` output: one line per GPU and sample, in soak's metric names.

Any subset and order of fields is read, with units in the header (`power.draw [W]`) and in the values
("65.30 W"), or without them in the values (`--format=csv,nounits`). `[N/A]` and `[Not Supported]` are no
data, not errors. Clock-event reasons are read under both spellings, `clocks_throttle_reasons.*` (older
drivers) and `clocks_event_reasons.*`. Timestamps carry no zone; they are read as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from agents.nvml.clock_events import CLOCK_EVENT_FLAGS
from soak.offline.lines import (
    DeviceFacts,
    ImportRefused,
    Line,
    Problem,
    checked_epoch_s,
    epoch_s,
    parse_timestamp_s,
    rejected_line,
    width_problem,
)

# NVML's clock-event reasons, under the names nvidia-smi gives its fields; its CSV has no display-clock field.
CLOCK_EVENT_BITS: dict[str, int] = {flag: bit for flag, bit in CLOCK_EVENT_FLAGS.items() if flag != "display_clock"}
REASON_PREFIXES = ("clocks_event_reasons.", "clocks_throttle_reasons.")
MAX_INDEX_DIGITS = 6
IDENTITY_COLUMNS = ("timestamp", "index", "uuid", "name", "pci.bus_id", "driver_version", "serial", "vbios_version")

_HEADER_CELL = re.compile(r"^(?P<name>[^\[]*?)\s*(?:\[(?P<unit>[^\]]*)\])?$")
_QUANTITY = re.compile(r"^(?P<number>[-+]?\d+(?:\.\d*)?)\s*(?P<unit>[A-Za-z%]*)$")
_SMI_TIME = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?$")
_PSTATE = re.compile(r"^P(\d{1,2})$")

Reader = Callable[[str, str | None], float | None]
"""Turns a field's text (and its header's unit) into a value in soak's unit, None for no data."""


def _no_data(text: str) -> bool:
    return not text or text.startswith("[") or text.upper() in {"N/A", "NA"}


@dataclass(frozen=True)
class _Quantity:
    """A number with its unit in the value ("65.30 W") or only in the header (`power.draw [W]`), in soak's unit."""

    scales: dict[str, float]
    default_unit: str
    divisor: float = 1.0

    def __call__(self, text: str, header_unit: str | None) -> float | None:
        if _no_data(text):
            return None
        match = _QUANTITY.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a number")
        unit = match["unit"] or header_unit or self.default_unit
        scale = self.scales.get(unit)
        if scale is None:
            raise ValueError(f"{text!r}: unit {unit!r} is not one of {', '.join(self.scales)}")
        return float(match["number"]) * scale / self.divisor


WATTS = _Quantity({"W": 1.0, "mW": 1e-3}, "W")
MEGAHERTZ = _Quantity({"MHz": 1.0}, "MHz")
RATIO = _Quantity({"%": 1.0}, "%", divisor=100.0)
BYTES = _Quantity({"MiB": 2.0**20, "GiB": 2.0**30, "KiB": 2.0**10, "B": 1.0}, "MiB")
CELSIUS = _Quantity({"C": 1.0}, "C")
COUNT = _Quantity({"": 1.0}, "")


def _active(text: str, _unit: str | None) -> float | None:
    if _no_data(text):
        return None
    state = text.replace("_", " ").lower()
    if state not in {"active", "not active"}:
        raise ValueError(f"{text!r} is neither Active nor Not Active")
    return 1.0 if state == "active" else 0.0


def _bitmask(text: str, _unit: str | None) -> float | None:
    if _no_data(text):
        return None
    try:
        return float(int(text, 16))
    except ValueError:
        raise ValueError(f"{text!r} is not a hexadecimal bitmask such as 0x0000000000000004") from None


def _pstate(text: str, _unit: str | None) -> float | None:
    if _no_data(text):
        return None
    match = _PSTATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a performance state P0 … P15")
    return float(match[1])


@dataclass(frozen=True)
class _Measure:
    """A soak metric and the nvidia-smi fields that give it, the first present and readable one winning."""

    metric: str
    fields: tuple[str, ...]
    read: Reader


MEASURES: tuple[_Measure, ...] = (
    _Measure("device.temperature_c", ("temperature.gpu",), CELSIUS),
    _Measure("device.memory_temperature_c", ("temperature.memory",), CELSIUS),
    _Measure("device.power_w", ("power.draw", "power.draw.average", "power.draw.instant"), WATTS),
    _Measure("device.power_limit_w", ("enforced.power.limit", "power.limit"), WATTS),
    _Measure("device.sm_clock_mhz", ("clocks.current.sm", "clocks.sm"), MEGAHERTZ),
    _Measure("device.mem_clock_mhz", ("clocks.current.memory", "clocks.mem"), MEGAHERTZ),
    _Measure("device.sm_clock_max_mhz", ("clocks.max.sm", "clocks.max.streaming_multiprocessor"), MEGAHERTZ),
    _Measure("device.utilization_ratio", ("utilization.gpu",), RATIO),
    _Measure("device.memory_utilization_ratio", ("utilization.memory",), RATIO),
    _Measure("device.memory_used_bytes", ("memory.used",), BYTES),
    _Measure("device.memory_total_bytes", ("memory.total",), BYTES),
    # The same names as the agent's NVML collector, so that imported and collected series compare.
    _Measure("device.ecc_corrected_volatile_errors", ("ecc.errors.corrected.volatile.total",), COUNT),
    _Measure("device.ecc_uncorrected_volatile_errors", ("ecc.errors.uncorrected.volatile.total",), COUNT),
    _Measure("device.pcie_link_gen", ("pcie.link.gen.current", "pcie.link.gen.gpucurrent"), COUNT),
    _Measure("device.pcie_link_width", ("pcie.link.width.current",), COUNT),
    _Measure("device.pstate", ("pstate",), _pstate),
    _Measure("device.clock_event_reasons", tuple(f"{prefix}active" for prefix in REASON_PREFIXES), _bitmask),
    *(
        _Measure(f"device.clock_event.{flag}", tuple(prefix + flag for prefix in REASON_PREFIXES), _active)
        for flag in CLOCK_EVENT_BITS
    ),
)


@dataclass(frozen=True)
class _Source:
    """A column that feeds a metric: where it is, what its header calls it, and its header's unit."""

    position: int
    name: str
    unit: str | None


@dataclass(frozen=True)
class _Layout:
    """Where each field is, from a header line."""

    header: list[str]
    identity: dict[str, int]
    sources: list[tuple[_Measure, list[_Source]]]
    flags_in_columns: frozenset[str]


def parse_smi_time_s(text: str) -> float:
    """nvidia-smi's `2026/11/28 10:15:42.123` (no zone: read as UTC), or ISO-8601, or epoch seconds."""
    match = _SMI_TIME.match(text)
    if match is None:
        return parse_timestamp_s(text)
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError as error:
        raise ValueError(f"{text!r} is not a valid time: {error}") from None
    return checked_epoch_s(epoch_s(moment) + float(match[7] or 0.0), text)


class NvidiaSmiCsv:
    """Parses nvidia-smi's CSV; device names are `{node}/cuda{index}`, as the agent names them."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.ignored_columns: list[str] = []
        self._uuids: dict[int, str] = {}
        self._facts: dict[int, DeviceFacts] = {}

    def parse(self, rows: Iterable[tuple[int, list[str]]]) -> Iterator[Line]:
        """One Line per data line; a header line (the first, or one repeated later) sets the columns."""
        layout: _Layout | None = None
        broken_header: int | None = None
        for number, cells in rows:
            if not any(cell.strip() for cell in cells):
                continue
            if any(cell.strip().lower() == "timestamp" for cell in cells):
                try:
                    layout, broken_header = self._layout(cells), None
                except ImportRefused as error:
                    if layout is None and broken_header is None:
                        raise ImportRefused(f"line {number}: {error}") from None
                    layout, broken_header = None, number
                    yield rejected_line(number, "(header)", str(error))
                continue
            if broken_header is not None:
                yield rejected_line(number, "(line)", f"follows the header on line {broken_header}, which was refused")
                continue
            if layout is None:
                raise ImportRefused(
                    f"line {number}: expected nvidia-smi's header line (timestamp, index, ...); output written "
                    "with --format=csv,noheader needs the names of its --query-gpu fields added as a first line"
                )
            if len(cells) != len(layout.header):
                yield width_problem(number, len(cells), len(layout.header))
                continue
            yield self._line(number, [cell.strip() for cell in cells], layout)

    def _layout(self, cells: list[str]) -> _Layout:
        header = [_split_header(cell) for cell in cells]
        names = [name for name, _unit in header]
        missing = [name for name in ("timestamp", "index") if name not in names]
        if missing:
            raise ImportRefused(
                f"the header has no {' or '.join(missing)} field; query them "
                "(--query-gpu=timestamp,index,...) so that every line has a time and a GPU"
            )
        identity = {name: names.index(name) for name in IDENTITY_COLUMNS if name in names}
        sources: list[tuple[_Measure, list[_Source]]] = []
        used = set(identity)
        for measure in MEASURES:
            found = [
                _Source(names.index(field), field, header[names.index(field)][1])
                for field in measure.fields
                if field in names
            ]
            if found:
                sources.append((measure, found))
                used.update(source.name for source in found)
        self.ignored_columns = sorted({name for name in names if name not in used} | set(self.ignored_columns))
        flags = frozenset(
            measure.metric.removeprefix("device.clock_event.")
            for measure, _found in sources
            if measure.metric.startswith("device.clock_event.")
        )
        return _Layout(header=names, identity=identity, sources=sources, flags_in_columns=flags)

    def _line(self, number: int, fields: list[str], layout: _Layout) -> Line:
        try:
            time_s = parse_smi_time_s(fields[layout.identity["timestamp"]])
        except ValueError as error:
            return rejected_line(number, "timestamp", str(error))
        index_text = fields[layout.identity["index"]]
        # ASCII digits only (str.isdigit takes '²', which int() refuses), and few: a GPU index, not a serial.
        if not (index_text.isascii() and index_text.isdigit() and len(index_text) <= MAX_INDEX_DIGITS):
            return rejected_line(number, "index", f"{index_text!r} is not a GPU index (0, 1, 2, ...)")
        index = int(index_text)
        uuid = _identity(fields, layout, "uuid")
        known_uuid = self._uuids.setdefault(index, uuid) if uuid is not None else None
        if uuid is not None and known_uuid != uuid:
            return rejected_line(
                number,
                "uuid",
                f"GPU {index} is {uuid} here but was {known_uuid} earlier in the file (renumbered, e.g. after a "
                f"reboot); these lines are not cuda{index}'s: split the file there and import the part separately",
            )
        problems: list[Problem] = []
        values: dict[str, float] = {}
        for measure, sources in layout.sources:
            for source in sources:
                try:
                    value = measure.read(fields[source.position], source.unit)
                except ValueError as error:
                    problems.append(Problem(number, source.name, str(error)))
                    continue
                if value is not None:
                    values[measure.metric] = value
                    break
        mask = values.get("device.clock_event_reasons")
        if mask is not None:
            for flag, bit in CLOCK_EVENT_BITS.items():
                if flag not in layout.flags_in_columns:
                    values[f"device.clock_event.{flag}"] = 1.0 if int(mask) & bit else 0.0
        return Line(
            number=number,
            problems=problems,
            node=self.node,
            device=f"{self.node}/cuda{index}",
            time_s=time_s,
            values=list(values.items()),
            facts=self._device_facts(index, fields, layout),
        )

    def _device_facts(self, index: int, fields: list[str], layout: _Layout) -> DeviceFacts:
        facts = self._facts.get(index)
        if facts is None:
            facts = self._facts[index] = DeviceFacts(
                index=index,
                backend="cuda",
                vendor="nvidia",
                model=_identity(fields, layout, "name") or "NVIDIA GPU",
                uuid=_identity(fields, layout, "uuid"),
                bus_id=_identity(fields, layout, "pci.bus_id"),
                driver_version=_identity(fields, layout, "driver_version"),
                serial=_identity(fields, layout, "serial"),
                firmware_version=_identity(fields, layout, "vbios_version"),
            )
        return facts


def _split_header(cell: str) -> tuple[str, str | None]:
    match = _HEADER_CELL.match(cell.strip())
    if match is None:
        return cell.strip().lower(), None
    return match["name"].lower(), match["unit"] or None


def _identity(fields: list[str], layout: _Layout, name: str) -> str | None:
    position = layout.identity.get(name)
    if position is None or _no_data(fields[position]):
        return None
    return fields[position]

"""What a file parser hands the importer: one line's samples, its problems, and what it says about a device."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Past this a number is not epoch seconds (it is most likely milliseconds): 2100-01-01 UTC.
LATEST_EPOCH_S = 4_102_444_800.0


class ImportRefused(ValueError):
    """The file or the campaign cannot be imported at all; the message names the field and the fix."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A field of a file's line that was not imported, and why."""

    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.problem}"


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a file says about a device besides its name, for its registration."""

    index: int
    backend: str
    vendor: str
    model: str
    uuid: str | None = None
    bus_id: str | None = None
    driver_version: str | None = None
    serial: str | None = None
    firmware_version: str | None = None


@dataclass(slots=True)
class Line:
    """One data line of a file: its samples (metric, value) at one time, or why it was rejected."""

    number: int
    problems: list[Problem] = field(default_factory=list)
    rejected: bool = False
    node: str = ""
    device: str | None = None
    time_s: float = 0.0
    values: list[tuple[str, float]] = field(default_factory=list)
    facts: DeviceFacts | None = None


def rejected_line(number: int, field_name: str, problem: str) -> Line:
    """A line that yields nothing, with the one problem that sank it."""
    return Line(number=number, problems=[Problem(number, field_name, problem)], rejected=True)


def width_problem(number: int, cells: int, header_cells: int) -> Line:
    """A line whose field count differs from its header's: torn, wrapped or from another query."""
    return rejected_line(number, "(line)", f"{cells} fields, the header has {header_cells}")


def epoch_s(moment: datetime) -> float:
    """Epoch seconds of a datetime; a naive one is read as UTC."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def parse_timestamp_s(text: str) -> float:
    """ISO-8601 (with or without a zone; naive is UTC) or epoch seconds, as epoch seconds."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = epoch_s(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(f"{text!r} is neither an ISO-8601 time nor epoch seconds") from None
    return checked_epoch_s(seconds, text)


def checked_epoch_s(seconds: float, text: str) -> float:
    """Refuse times before 1970 or after 2100: a mistyped field, or milliseconds given as seconds."""
    if not (math.isfinite(seconds) and 0.0 < seconds < LATEST_EPOCH_S):
        raise ValueError(f"{text!r} is not a time between 1970 and 2100 (epoch milliseconds? give seconds)")
    return seconds

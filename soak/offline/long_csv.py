"""The long CSV: one sample a line, `timestamp,node,device,metric,value`, in soak's own metric names."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator

from soak.offline.lines import DeviceFacts, ImportRefused, Line, Problem, parse_timestamp_s, width_problem
from soak.telemetry.schemas import METRIC_PATTERN, NAME_PATTERN

COLUMNS = ("timestamp", "node", "device", "metric", "value")
METRIC_MAX_CHARS = 96
_METRIC = re.compile(METRIC_PATTERN)
_NAME = re.compile(NAME_PATTERN)
# How the agent names a device: `gpu-07/cuda3`, `sim3`; the backend and index are read back from the name.
# Bounded as the device table's columns are (backend 32 characters, a 32-bit index); others are read as unknown.
_DEVICE_NAME = re.compile(r"^(?:.*/)?(?P<backend>[a-z][a-z_]{0,31})(?P<index>[0-9]{1,9})$")


def device_facts(name: str) -> DeviceFacts:
    """A device known only by its name: backend and index from it where it follows the agent's naming."""
    match = _DEVICE_NAME.match(name)
    if match is None:
        return DeviceFacts(index=0, backend="unknown", vendor="unknown", model="unknown (imported)")
    return DeviceFacts(
        index=int(match["index"]), backend=match["backend"], vendor="unknown", model="unknown (imported)"
    )


class LongCsv:
    """Parses the long format; a bad line is rejected whole, since it holds a single sample."""

    def __init__(self) -> None:
        self.ignored_columns: list[str] = []
        self._facts: dict[str, DeviceFacts] = {}
        self._valid_names: set[str] = set()
        self._valid_metrics: set[str] = set()

    def parse(self, rows: Iterable[tuple[int, list[str]]]) -> Iterator[Line]:
        """One Line per data line; the first non-empty line must be the header."""
        header: list[str] | None = None
        positions: tuple[int, ...] = ()
        for number, cells in rows:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                positions = self._layout(number, header)
                continue
            if len(cells) != len(header):
                yield width_problem(number, len(cells), len(header))
                continue
            if cells[0].strip().lower() == header[0] and [cell.strip().lower() for cell in cells] == header:
                continue
            timestamp, node, device, metric, value = (cells[position].strip() for position in positions)
            yield self._line(number, timestamp, node, device, metric, value)

    def _layout(self, number: int, names: list[str]) -> tuple[int, ...]:
        missing = [column for column in COLUMNS if column not in names]
        if missing:
            raise ImportRefused(
                f"line {number}: the header must name the columns {','.join(COLUMNS)}; "
                f"{', '.join(missing)} missing (found {','.join(names)})"
            )
        self.ignored_columns = [name for name in names if name not in COLUMNS]
        return tuple(names.index(column) for column in COLUMNS)

    def _line(self, number: int, timestamp: str, node: str, device: str, metric: str, value_text: str) -> Line:
        problems: list[Problem] = []
        time_s = 0.0
        try:
            time_s = parse_timestamp_s(timestamp)
        except ValueError as error:
            problems.append(Problem(number, "timestamp", str(error)))
        if not self._valid_name(node):
            problems.append(Problem(number, "node", _name_problem(node)))
        if device and not self._valid_name(device):
            problems.append(Problem(number, "device", _name_problem(device)))
        if metric not in self._valid_metrics:
            if _METRIC.match(metric) is None or len(metric) > METRIC_MAX_CHARS:
                problems.append(
                    Problem(
                        number,
                        "metric",
                        f"{metric!r} is not a soak metric name: lower case, dotted, at most {METRIC_MAX_CHARS} "
                        "characters, e.g. device.memory_used_bytes",
                    )
                )
            else:
                self._valid_metrics.add(metric)
        try:
            value = float(value_text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            problems.append(Problem(number, "value", f"{value_text!r} is not a finite number"))
        if problems:
            return Line(number=number, problems=problems, rejected=True)
        facts = None
        if device:
            facts = self._facts.get(device)
            if facts is None:
                facts = self._facts[device] = device_facts(device)
        return Line(
            number=number, node=node, device=device or None, time_s=time_s, values=[(metric, value)], facts=facts
        )

    def _valid_name(self, name: str) -> bool:
        if name in self._valid_names:
            return True
        if _NAME.match(name) is None:
            return False
        self._valid_names.add(name)
        return True


def _name_problem(name: str) -> str:
    return f"{name!r} is not a valid name: letters, digits and _ . : / - only, up to 128 characters"

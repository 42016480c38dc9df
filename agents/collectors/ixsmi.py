"""Iluvatar CoreX GPUs through ixsmi, which follows nvidia-smi: a CSV query first, the summary table if that fails.

corex 4.x names the power fields gpu.power.draw and gpu.power.limit, corex 3.x power.draw and power.limit; the
collector asks with one spelling, then the other, and keeps whichever answered.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from typing import ClassVar

from agents.collectors.smi_command import Runner
from agents.collectors.smi_reading import (
    SmiCollector,
    SmiReading,
    mib_bytes,
    number,
    percent_ratio,
    row_pairs,
    text_or_none,
)
from agents.config import AgentSettings

log = logging.getLogger(__name__)

QUERY_FIELDS = (
    "index,name,uuid,temperature.gpu,power.draw,power.limit,memory.used,memory.total,utilization.gpu,clocks.sm",
    "index,name,uuid,temperature.gpu,gpu.power.draw,gpu.power.limit,memory.used,memory.total,utilization.gpu,clocks.sm",
)
FIELD_ALIASES = {"gpu.power.draw": "power.draw", "gpu.power.limit": "power.limit"}

_DRIVER = re.compile(r"Driver Version:\s*(\S+)")
_TEMPERATURE = re.compile(r"(-?\d+(?:\.\d+)?)C\b")
_POWER = re.compile(r"(\S+)\s*/\s*(\S+)\s*$")


def parse_query_csv(text: str, fields: str) -> list[SmiReading]:
    """Rows of `ixsmi --query-gpu=FIELDS --format=csv,noheader,nounits`, tolerant of units and [N/A]."""
    names = [FIELD_ALIASES.get(name, name) for name in fields.split(",")]
    readings: list[SmiReading] = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row:
            continue
        values = dict(zip(names, (cell.strip() for cell in row), strict=False))
        index = number(values.get("index"))
        if index is None or len(row) != len(names):
            log.debug("ixsmi CSV row not understood, skipped: %r", row)
            continue
        readings.append(
            SmiReading(
                index=int(index),
                model=text_or_none(values.get("name")),
                uuid=text_or_none(values.get("uuid")),
                temperature_c=number(values.get("temperature.gpu")),
                power_w=number(values.get("power.draw")),
                power_limit_w=number(values.get("power.limit")),
                memory_used_bytes=mib_bytes(values.get("memory.used")),
                memory_total_bytes=mib_bytes(values.get("memory.total")),
                utilization_ratio=percent_ratio(values.get("utilization.gpu")),
                sm_clock_mhz=number(values.get("clocks.sm")),
            )
        )
    return readings


def parse_table(text: str) -> list[SmiReading]:
    """Every GPU of the plain `ixsmi` table; a malformed row pair loses that GPU only."""
    driver = _DRIVER.search(text)
    readings: list[SmiReading] = []
    for first, second in row_pairs(text, stop="Processes", is_header=_is_header):
        identity = first[0].split(None, 1)
        index = number(identity[0]) if identity else None
        if index is None:
            log.debug("ixsmi row pair not understood, GPU skipped: %r %r", first, second)
            continue
        temperature = _TEMPERATURE.search(second[0])
        power = _POWER.search(second[0])
        used_text, _, total_text = second[1].partition("/")
        readings.append(
            SmiReading(
                index=int(index),
                model=identity[1].strip() if len(identity) > 1 else None,
                bus_id=text_or_none(first[1]),
                driver_version=driver.group(1) if driver else None,
                temperature_c=float(temperature.group(1)) if temperature else None,
                power_w=number(power.group(1)) if power else None,
                power_limit_w=number(power.group(2)) if power else None,
                sm_clock_mhz=number(first[2].split()[0]) if first[2] else None,
                memory_used_bytes=mib_bytes(used_text),
                memory_total_bytes=mib_bytes(total_text),
                utilization_ratio=percent_ratio(second[2].split()[0]) if second[2] else None,
            )
        )
    return readings


def _is_header(cells: list[str]) -> bool:
    return cells[0].startswith(("GPU", "Fan"))


class IxsmiCollector(SmiCollector):
    """Iluvatar GPUs: temperature, power and its limit, SM clock, utilisation and memory."""

    name: ClassVar[str] = "ixsmi"
    backend: ClassVar[str] = "cuda"
    vendor: ClassVar[str] = "iluvatar"
    default_model: ClassVar[str] = "Iluvatar GPU"

    def __init__(self, settings: AgentSettings, run: Runner | None = None) -> None:
        super().__init__(settings, run)
        self._fields = QUERY_FIELDS[0]

    def read(self, now_s: float) -> list[SmiReading]:
        for fields in (self._fields, *(other for other in QUERY_FIELDS if other != self._fields)):
            text = self._run(["ixsmi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
            readings = parse_query_csv(text, fields) if text is not None else []
            if readings:
                self._fields = fields
                return readings
        text = self._run(["ixsmi"])
        return parse_table(text) if text is not None else []

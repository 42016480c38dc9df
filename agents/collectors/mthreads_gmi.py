"""Moore Threads GPUs through the `mthreads-gmi` summary table.

The table gives utilisation, memory, temperature, the PCIe link and the ECC mode; it has no power column, and
no public sample of `mthreads-gmi -q` or its JSON form was found to parse power from, so power is not reported.
Releases before 2.3 lack the Perf column; cells are read by position within each '|' column, so both read alike.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from agents.collectors.smi_reading import SmiCollector, SmiReading, mib_bytes, number, percent_ratio, text_or_none

log = logging.getLogger(__name__)

_DRIVER = re.compile(r"Driver Version:\s*(\S+)")
_UTILIZATION = re.compile(r"(\d+(?:\.\d+)?)%")
_MEMORY = re.compile(r"(\d+)\s*MiB\s*\(\s*(\d+)\s*MiB\s*\)")
_TEMPERATURE = re.compile(r"(-?\d+(?:\.\d+)?)C\b")
_RULE_CHARACTERS = set("+-= ")


def parse_table(text: str) -> list[SmiReading]:
    """Every GPU of `mthreads-gmi`; a malformed GPU block loses that GPU only."""
    driver = _DRIVER.search(text)
    driver_version = driver.group(1) if driver else None
    readings: list[SmiReading] = []
    block: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Processes"):
            break
        if stripped and set(stripped) <= _RULE_CHARACTERS:
            reading = _gpu(block, driver_version)
            if reading is not None:
                readings.append(reading)
            block = []
        elif "|" in line:
            block.append([cell.strip() for cell in line.split("|")])
    reading = _gpu(block, driver_version)
    if reading is not None:
        readings.append(reading)
    return readings


def _gpu(block: list[list[str]], driver_version: str | None) -> SmiReading | None:
    if not block or not block[0][0][:1].isdigit():
        return None
    try:
        index_text, name = block[0][0].split(None, 1)
        usage = block[0][2]
        temperature_text = block[1][2] if len(block) > 1 else ""
    except (ValueError, IndexError):
        log.debug("mthreads-gmi GPU block not understood, skipped: %r", block)
        return None
    utilization = _UTILIZATION.search(usage)
    memory = _MEMORY.search(usage)
    temperature = _TEMPERATURE.search(temperature_text)
    index = number(index_text)
    if index is None:
        return None
    return SmiReading(
        index=int(index),
        model=name.strip() or None,
        bus_id=text_or_none(block[0][1]),
        driver_version=driver_version,
        temperature_c=float(temperature.group(1)) if temperature else None,
        utilization_ratio=percent_ratio(utilization.group(1)) if utilization else None,
        memory_used_bytes=mib_bytes(memory.group(1)) if memory else None,
        memory_total_bytes=mib_bytes(memory.group(2)) if memory else None,
    )


class MthreadsGmiCollector(SmiCollector):
    """Moore Threads GPUs: temperature, utilisation and memory."""

    name: ClassVar[str] = "mthreads_gmi"
    backend: ClassVar[str] = "musa"
    vendor: ClassVar[str] = "moorethreads"
    default_model: ClassVar[str] = "Moore Threads GPU"

    def read(self, now_s: float) -> list[SmiReading]:
        text = self._run(["mthreads-gmi"])
        return parse_table(text) if text is not None else []

"""MetaX GPUs through the `mx-smi` summary table.

Releases up to 2.1 print a 'Power' column without the cap and no GPU state; 2.2 and later print 'Pwr:Usage/Cap'
and a GPU-State column. A state other than 'Available' is health 1 (warning) with a driver_error event. Another
vendor (MOFFETT) ships a tool of the same name; output without the MetaX title is no data.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from agents.collectors.smi_reading import (
    HEALTH_OK,
    HEALTH_WARNING,
    SmiCollector,
    SmiFault,
    SmiReading,
    mib_bytes,
    number,
    percent_ratio,
    row_pairs,
    text_or_none,
)

log = logging.getLogger(__name__)

_DRIVER = re.compile(r"Kernel Mode Driver Version:\s*(\S+)")
_BIOS = re.compile(r"BIOS Version:\s*(\S+)")
_TEMPERATURE = re.compile(r"(-?\d+(?:\.\d+)?)C\b")
_POWER = re.compile(r"(\d+(?:\.\d+)?)W(?:\s*/\s*(\S+))?")
_PERSISTENCE = {"on", "off"}
AVAILABLE = "available"


def parse_table(text: str) -> list[SmiReading]:
    """Every GPU of `mx-smi`; a malformed row pair loses that GPU only."""
    if "MetaX" not in text and "MX-SMI" not in text:
        log.debug("mx-smi output without the MetaX title: another vendor's tool, no data")
        return []
    driver = _DRIVER.search(text)
    bios = _BIOS.search(text)
    readings: list[SmiReading] = []
    for first, second in row_pairs(text, stop="Process:", is_header=_is_header):
        identity = first[0].split()
        index = number(identity[0]) if identity else None
        if index is None:
            log.debug("mx-smi row pair not understood, GPU skipped: %r %r", first, second)
            continue
        name = identity[1:-1] if identity[-1].lower() in _PERSISTENCE else identity[1:]
        temperature = _TEMPERATURE.search(second[0])
        power = _POWER.search(second[0])
        used_text, _, total_text = second[1].partition("/")
        reading = SmiReading(
            index=int(index),
            model=" ".join(name) or None,
            bus_id=text_or_none(first[1]),
            driver_version=driver.group(1) if driver else None,
            firmware_version=bios.group(1) if bios else None,
            temperature_c=float(temperature.group(1)) if temperature else None,
            power_w=float(power.group(1)) if power else None,
            power_limit_w=number(power.group(2)) if power and power.group(2) else None,
            memory_used_bytes=mib_bytes(used_text),
            memory_total_bytes=mib_bytes(total_text),
            utilization_ratio=percent_ratio(first[2].split()[0]) if first[2] else None,
        )
        state = text_or_none(second[2])
        if state is not None:
            reading.health_status = HEALTH_OK if state.lower() == AVAILABLE else HEALTH_WARNING
            if reading.health_status != HEALTH_OK:
                reading.faults = [SmiFault(None, "warning", f"GPU state {state}", f"GPU-State: {state}")]
        readings.append(reading)
    return readings


def _is_header(cells: list[str]) -> bool:
    return cells[0].startswith(("GPU", "Temp", "MX-SMI", "MACA"))


class MxSmiCollector(SmiCollector):
    """MetaX GPUs: temperature, power and its cap, utilisation, memory and GPU state."""

    name: ClassVar[str] = "mx_smi"
    backend: ClassVar[str] = "cuda"
    vendor: ClassVar[str] = "metax"
    default_model: ClassVar[str] = "MetaX GPU"

    def read(self, now_s: float) -> list[SmiReading]:
        text = self._run(["mx-smi"])
        return parse_table(text) if text is not None else []

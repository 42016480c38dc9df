"""Cambricon MLUs through the `cnmon` summary table.

Two layouts are read: driver 5 and later puts the PCI bus id in the middle column and the driver version in the
title; driver 4 put an Inited/Driver column there instead. The Ecc-Error column becomes device.ecc_errors.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from agents.collectors.smi_reading import (
    SmiCollector,
    SmiReading,
    mib_bytes,
    number,
    percent_ratio,
    row_pairs,
    text_or_none,
)

log = logging.getLogger(__name__)

_DRIVER_TITLE = re.compile(r"Driver\s+(v\S+)")
_TEMPERATURE = re.compile(r"(-?\d+(?:\.\d+)?)\s*C\b")
_POWER = re.compile(r"(\d+(?:\.\d+)?)\s*W\s*/\s*(\S+?)\s*W?\s*$")


def parse_table(text: str) -> list[SmiReading]:
    """Every card of `cnmon`; a malformed row pair loses that card only."""
    title = _DRIVER_TITLE.search(text.split("Card", 1)[0])
    driver_version = title.group(1) if title else None
    header = next((line for line in text.splitlines() if line.strip().startswith("| Card")), "")
    bus_column = "Bus-Id" in header
    readings: list[SmiReading] = []
    for first, second in row_pairs(text, stop="Processes", is_header=_is_header):
        reading = _card(first, second, bus_column=bus_column, driver_version=driver_version)
        if reading is not None:
            readings.append(reading)
    return readings


def _is_header(cells: list[str]) -> bool:
    return cells[0].startswith(("Card", "Fan"))


def _card(first: list[str], second: list[str], *, bus_column: bool, driver_version: str | None) -> SmiReading | None:
    identity = first[0].split()
    try:
        index = int(identity[0])
    except (ValueError, IndexError):
        log.debug("cnmon row pair not understood, card skipped: %r %r", first, second)
        return None
    firmware = identity[-1] if len(identity) > 3 and identity[-1].startswith("v") else None
    name_tokens = identity[2:-1] if firmware else identity[2:]
    middle = first[1].split()
    util_and_ecc = first[2].split()
    temperature = _TEMPERATURE.search(second[0])
    power = _POWER.search(second[0])
    used_text, _, total_text = second[1].partition("/")
    ecc = number(util_and_ecc[1]) if len(util_and_ecc) > 1 else None
    return SmiReading(
        index=index,
        model=" ".join(name_tokens) or None,
        bus_id=text_or_none(first[1]) if bus_column else None,
        driver_version=driver_version if bus_column else (middle[-1] if middle else driver_version),
        firmware_version=firmware,
        temperature_c=float(temperature.group(1)) if temperature else None,
        power_w=float(power.group(1)) if power else None,
        power_limit_w=number(power.group(2)) if power else None,
        utilization_ratio=percent_ratio(util_and_ecc[0]) if util_and_ecc else None,
        memory_used_bytes=mib_bytes(used_text),
        memory_total_bytes=mib_bytes(total_text),
        ecc_errors={"errors": ecc} if ecc is not None else {},
    )


class CnmonCollector(SmiCollector):
    """Cambricon MLUs: temperature, power and its cap, utilisation, memory and the ECC error count."""

    name: ClassVar[str] = "cnmon"
    backend: ClassVar[str] = "mlu"
    vendor: ClassVar[str] = "cambricon"
    default_model: ClassVar[str] = "Cambricon MLU"

    def read(self, now_s: float) -> list[SmiReading]:
        text = self._run(["cnmon"])
        return parse_table(text) if text is not None else []

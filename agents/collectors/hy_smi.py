"""Hygon DCUs through `hy-smi --json`, a fork of rocm-smi whose JSON this module's parser reads for both.

Field names drift between releases and between the two tools ('HCU use (%)', 'DCU use (%)', 'GPU use (%)';
memory in MiB or in bytes), so every quantity is looked up through a list of aliases. Some releases print error
lines around the JSON or drop commas between members; json_document tolerates both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import ClassVar

from agents.collectors.smi_reading import (
    MIB_BYTES,
    SmiCollector,
    SmiReading,
    json_document,
    number,
    percent_ratio,
    text_or_none,
)

log = logging.getLogger(__name__)

HY_SMI_ARGS = (
    "--showid",
    "--showproductname",
    "--showserial",
    "--showuniqueid",
    "--showtemp",
    "--showpower",
    "--showuse",
    "--showmeminfo",
    "vram",
    "--json",
)
HY_SMI_MINIMAL_ARGS = ("--showtemp", "--showpower", "--showuse", "--showmeminfo", "vram", "--json")

TEMPERATURE_KEYS = (
    "temperature (sensor junction) (c)",
    "temperature (sensor edge) (c)",
    "temperature (sensor core) (c)",
)
MEMORY_TEMPERATURE_KEYS = ("temperature (sensor mem) (c)", "temperature (sensor memory) (c)")
POWER_KEYS = ("average graphics package power (w)", "current socket graphics package power (w)")
POWER_LIMIT_KEYS = ("max graphics package power (w)",)
UTILIZATION_KEYS = ("hcu use (%)", "dcu use (%)", "gpu use (%)")
MEMORY_TOTAL_KEYS = {"vram total memory (mib)": MIB_BYTES, "vram total memory (b)": 1}
MEMORY_USED_KEYS = {"vram total used memory (mib)": MIB_BYTES, "vram total used memory (b)": 1}
CLOCK_KEYS = ("sclk clock speed", "sclk clock speed:")
ENERGY_MICROJOULE_KEYS = ("accumulated energy (uj)",)
MODEL_KEYS = ("card series", "card sku")
_CARD = re.compile(r"card(\d+)")


def parse_cards(text: str) -> list[SmiReading]:
    """Every card of a hy-smi or rocm-smi JSON output; a card's unreadable field is left out, not the card."""
    document = json_document(text)
    if not isinstance(document, dict):
        return []
    system = document.get("system")
    system_driver = _lookup(system, ("driver version",)) if isinstance(system, Mapping) else None
    readings: list[SmiReading] = []
    for key, fields in document.items():
        card = _CARD.fullmatch(str(key).strip().lower())
        if card is None or not isinstance(fields, Mapping):
            continue
        energy_uj = number(_lookup(fields, ENERGY_MICROJOULE_KEYS))
        readings.append(
            SmiReading(
                index=int(card.group(1)),
                model=text_or_none(_lookup(fields, MODEL_KEYS)),
                serial=text_or_none(_lookup(fields, ("serial number",))),
                uuid=text_or_none(_lookup(fields, ("unique id",))),
                bus_id=text_or_none(_lookup(fields, ("pci bus",))),
                driver_version=text_or_none(_lookup(fields, ("driver version",)) or system_driver),
                firmware_version=text_or_none(_lookup(fields, ("vbios version",))),
                temperature_c=number(_lookup(fields, TEMPERATURE_KEYS)),
                memory_temperature_c=number(_lookup(fields, MEMORY_TEMPERATURE_KEYS)),
                power_w=number(_lookup(fields, POWER_KEYS)),
                power_limit_w=number(_lookup(fields, POWER_LIMIT_KEYS)),
                energy_j=energy_uj / 1e6 if energy_uj is not None else None,
                sm_clock_mhz=number(_lookup(fields, CLOCK_KEYS)),
                utilization_ratio=percent_ratio(_lookup(fields, UTILIZATION_KEYS)),
                memory_used_bytes=_scaled(fields, MEMORY_USED_KEYS),
                memory_total_bytes=_scaled(fields, MEMORY_TOTAL_KEYS),
            )
        )
    return sorted(readings, key=lambda reading: reading.index)


def _lookup(fields: Mapping[object, object], aliases: tuple[str, ...]) -> object:
    lowered = {str(key).strip().lower(): value for key, value in fields.items()}
    for alias in aliases:
        value = lowered.get(alias)
        if text_or_none(value) is not None:
            return value
    return None


def _scaled(fields: Mapping[object, object], aliases: dict[str, int]) -> float | None:
    for alias, scale in aliases.items():
        value = number(_lookup(fields, (alias,)))
        if value is not None:
            return value * scale
    return None


class HySmiCollector(SmiCollector):
    """Hygon DCUs: temperatures, power, utilisation, memory, serial and unique id."""

    name: ClassVar[str] = "hy_smi"
    backend: ClassVar[str] = "cuda"
    vendor: ClassVar[str] = "hygon"
    default_model: ClassVar[str] = "Hygon DCU"

    def read(self, now_s: float) -> list[SmiReading]:
        for args in (HY_SMI_ARGS, HY_SMI_MINIMAL_ARGS):
            text = self._run(["hy-smi", *args])
            readings = parse_cards(text) if text is not None else []
            if readings:
                return readings
        return []

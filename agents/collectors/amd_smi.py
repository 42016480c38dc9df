"""AMD GPUs through `amd-smi metric --json`, falling back to `rocm-smi --json` where amd-smi is absent or fails.

amd-smi prints a list of GPUs in older releases and {"gpu_data": [...]} in newer ones; each value is a
{"value", "unit"} object, a bare number or "N/A". amd-smi labels MiB as "MB".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from agents.collectors.hy_smi import parse_cards
from agents.collectors.smi_reading import MIB_BYTES, SmiCollector, SmiReading, json_document, number

log = logging.getLogger(__name__)

ROCM_SMI_ARGS = (
    "--showproductname",
    "--showserial",
    "--showuniqueid",
    "--showbus",
    "--showtemp",
    "--showpower",
    "--showmaxpower",
    "--showuse",
    "--showmeminfo",
    "vram",
    "--json",
)
MEMORY_UNIT_BYTES = {"b": 1, "kb": 1024, "mb": MIB_BYTES, "mib": MIB_BYTES, "gb": 1024 * MIB_BYTES}

UTILIZATION_PATHS = (("usage", "gfx_activity"),)
POWER_PATHS = (("power", "socket_power"),)
TEMPERATURE_PATHS = (("temperature", "hotspot"), ("temperature", "edge"))
MEMORY_TEMPERATURE_PATHS = (("temperature", "mem"),)
CLOCK_PATHS = (("clock", "gfx_0", "clk"),)
MEMORY_USED_PATHS = (("mem_usage", "used_vram"),)
MEMORY_TOTAL_PATHS = (("mem_usage", "total_vram"),)


def parse_metric(text: str) -> list[SmiReading]:
    """Every GPU of `amd-smi metric --json`, in either of its layouts; unreadable fields are left out."""
    document = json_document(text)
    if isinstance(document, Mapping):
        document = document.get("gpu_data")
    if not isinstance(document, list):
        return []
    readings: list[SmiReading] = []
    for entry in document:
        index = number(entry.get("gpu")) if isinstance(entry, Mapping) else None
        if not isinstance(entry, Mapping) or index is None:
            log.debug("amd-smi entry without a gpu index, skipped: %r", entry)
            continue
        readings.append(
            SmiReading(
                index=int(index),
                temperature_c=_value(entry, TEMPERATURE_PATHS),
                memory_temperature_c=_value(entry, MEMORY_TEMPERATURE_PATHS),
                power_w=_value(entry, POWER_PATHS),
                sm_clock_mhz=_value(entry, CLOCK_PATHS),
                utilization_ratio=_ratio(_value(entry, UTILIZATION_PATHS)),
                memory_used_bytes=_value(entry, MEMORY_USED_PATHS, MEMORY_UNIT_BYTES, default_unit="mb"),
                memory_total_bytes=_value(entry, MEMORY_TOTAL_PATHS, MEMORY_UNIT_BYTES, default_unit="mb"),
            )
        )
    return sorted(readings, key=lambda reading: reading.index)


def _value(
    entry: Mapping[str, object],
    paths: tuple[tuple[str, ...], ...],
    units: Mapping[str, float] | None = None,
    *,
    default_unit: str = "",
) -> float | None:
    for path in paths:
        node: object = entry
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        unit = default_unit
        if isinstance(node, Mapping):
            unit = str(node.get("unit", default_unit)).strip().lower()
            node = node.get("value")
        value = number(node)
        if value is None:
            continue
        if units is None:
            return value
        if unit in units:
            return value * units[unit]
        log.debug("amd-smi unit %r of %s not understood", unit, ".".join(path))
    return None


def _ratio(percent: float | None) -> float | None:
    return None if percent is None else percent / 100.0


class AmdSmiCollector(SmiCollector):
    """AMD GPUs: temperatures, power, GFX clock and activity, and memory."""

    name: ClassVar[str] = "amd_smi"
    backend: ClassVar[str] = "cuda"
    vendor: ClassVar[str] = "amd"
    default_model: ClassVar[str] = "AMD GPU"

    def read(self, now_s: float) -> list[SmiReading]:
        text = self._run(["amd-smi", "metric", "--json"])
        readings = parse_metric(text) if text is not None else []
        if readings:
            return readings
        text = self._run(["rocm-smi", *ROCM_SMI_ARGS])
        return parse_cards(text) if text is not None else []

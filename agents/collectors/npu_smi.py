"""Huawei Ascend NPUs through npu-smi: the `npu-smi info` table every cycle, chip details as needed.

`npu-smi info` gives health, power, temperature, AI Core use and memory of every chip in one call. A chip whose
health is not OK is asked `npu-smi info -t health -i N -c C` for its fault codes; the AI Core clock comes from
`npu-smi info -t common -i N`, asked and reported at most every DETAIL_INTERVAL_S, since every query starts the
tool anew. Fault codes are graded with the action classes of Huawei's device plugin (Ascend/mind-cluster,
faultCode.json).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from agents.collectors.smi_command import Runner
from agents.collectors.smi_reading import (
    HEALTH_CRITICAL,
    HEALTH_OK,
    HEALTH_WARNING,
    MIB_BYTES,
    SmiCollector,
    SmiFault,
    SmiReading,
    number,
    percent_ratio,
    row_pairs,
    text_or_none,
)
from agents.config import AgentSettings

log = logging.getLogger(__name__)

DETAIL_INTERVAL_S = 30.0

HEALTH_STATUS = {"ok": HEALTH_OK, "warning": HEALTH_WARNING, "alarm": HEALTH_CRITICAL, "critical": HEALTH_CRITICAL}
HEALTH_SEVERITY = {"warning": "warning", "alarm": "critical", "critical": "critical"}

# Huawei's device plugin sorts chip fault codes by the action they need (Ascend/mind-cluster,
# component/ascend-device-plugin/build/faultCode.json): no action, restart the job, or reset/isolate the NPU.
_NO_ACTION_CODES = """
80E21007 80E38003 80F78006 80C98006 80CB8006 81318006 80A18006 80A18005 80FB8000 8C1F8609 80CD8006 80CD8003 80A38006
80A38003 80A58006 80A58003 80DE1805 80F18006 80F18003 80DF8006 80E01805 80E18400 80E01809 80E18401 80E00209 80F38006
80F38003 80E18006 80D38009 819B800D 80DD8008 80DD8007 80B98006 80BD8006 819B8006 80DE1803 819D8000 81998006 81978006
81978004 815F8006 815F8004 81338006 81338004 817F8006 817F8004 816F8006 816F8004 814F8006 814F8004 81938006 81938004
81478006 81478004 813B8006 813B8004 81578006 81578004 81958006 81958004 81078603 8C2FA009 A4025021 A60250C1 A4025081
A214000D A414000D A4028801 A4025101 A2140007 A4140007 A2140008 A4140008 A40250E1 A214000A A414000A A4025061 A4025041
A214000B A414000B A414000C A2140009 A4140009 A4303002 80B78006 80B78005 80E1800F 80DE0200 814D8006 8C1F860B 8C1F8608
4C1F8608 819B8003 80DF8401 80DF8400 80818200 80818201 80818202 80818203 80818204 80818205 80F38009
"""
_RESTART_JOB_CODES = """
80C98008 80C98002 80C98003 80C98009 80CB8002 80CB8008 80CB8009 80CF8003 81318008 80D58000 80D58009 80D98008 80DB800A
80DB8000 80DD8000 80DD8003 80C98000 81AB800D 81AB8003 80BD8000 80BB8009 80BD8003 80BD8009 80BB8000 80BB8003 80BB8008
80BB800A 81AB8008 80C9800A 80CB800A 8C204E00 A8028802 A4302003 A4302004 A4302005 A4302006 A4302009 A430200A A6301002
B4060011 B406009C B4060008 B4060009 B406000E A60250A1 A2301002 A2303001 B4060006 B4060007 B406000D B4060014 B4060010
80E01801 81B38009 81B38004 81A3880C 81AD8605 80E20207 81078605 80DE0207 8C2FA001 819B8605 80818C06 8C1F860A 80E18405
"""
_RESET_NPU_CODES = """
8C0E4E00 8C104E00 8C0C4E00 8C044E00 8C064E00 8C17A005 8C1DA005 8C19A005 8C0A4E00 8C084E00 A4193217 A4193218 A42A0000
A42F3917 A42F3918 8C464E00 8C124E00 8C03A000 8C1FA006 40F84E00 80E24E00 80E21E01 80E38008 80E3A202 80E3A203 80E39200
819B800A 80E2120D 80E78000 80E78008 80FA4E00 812E4E00 80C78008 80F78009 80F78008 80F78003 80E18404 80FB8005 80A18008
80CD8008 80A38008 80A58008 80DE1801 80F18008 80F18000 80F1800A 80CF8000 80DF8000 80DF8009 80DF8008 80DF800A 80F38008
80F2180D 80E18005 80E18008 80E1800A 812F8000 80B98000 80B98008 80BD8008 80CB8001 81998009 81998008 81978008 815F8008
81338008 817F8008 81478008 813B8008 81578008 81958008 A2141004 A2141006 A2142004 A2142006 A2145004 A4183200 A6023001
A6023002 A6023003 A6023004 A6060000 A6060001 A6060002 A6060003 A6060004 A6060005 A606000A A606000B A606000C A606000F
A606009D A6060FFF A607FFFF A6140001 A6140002 A6140003 A6140004 A6140005 A6140006 A6141003 A6142003 A6143003 A6144003
A6145003 A6192D15 A6193206 A6193215 A6193248 A62F3905 A62FFFFF A6303003 A6303004 A6360000 A6361000 A6362000 A8021004
A8060FFF A807FFFF A82A0000 80B78000 80B58000 81498004 80F78C02 80F78C03 80F78C04 81B38008 80E18000 80E21008 80C98001
80E58005 80E58009 80E58E02 80E58E03 816F8008 814F8008 81938008 80E44E00 80CF8009 80CF8008 813B8002 81338002 81578002
81958002 81938002 81478002 81978002 815F8002 81C9800A 81C7800A 81C5800A 813F800A 8139800A 8145800A 8C4BA00C 80E3A207
80E3A201 80E18402 80E0020B 817F8002 816F8002 814F8002 9419321B A2301000 A2301001 A2302001 A4192C1A A4193216 A419321B
A419321C A42F390F A42F3916 A42F391A A6183207 A62F3934 A8028801 A819320F A8193234 A8193235 80818C00 80818C05 80DF8402
4C4BA00C
"""
CODE_SEVERITY: dict[int, str] = {
    **{int(code, 16): "info" for code in _NO_ACTION_CODES.split()},
    **{int(code, 16): "warning" for code in _RESTART_JOB_CODES.split()},
    **{int(code, 16): "critical" for code in _RESET_NPU_CODES.split()},
}

_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_FAULT_CODE = re.compile(r"\b(?:0x)?([0-9A-Fa-f]{8})\b")
_VERSION = re.compile(r"Version:\s*(\S+)")

# Key spellings of `npu-smi info -t ...` outputs seen in public samples and in npu-smi's own print formats; the
# power reading is printed under a different name depending on the chip.
TEMPERATURE_KEYS = ("temperature(c)",)
POWER_KEYS = ("npu real-time power(w)", "power dissipation(w)")
CLOCK_KEYS = ("aicore curfreq(mhz)",)
AICORE_KEYS = ("aicore usage rate(%)",)
HBM_CAPACITY_KEYS = ("hbm capacity(mb)",)
DDR_CAPACITY_KEYS = ("ddr capacity(mb)",)
HBM_TEMPERATURE_KEYS = ("hbm temperature(c)",)
HEALTH_KEYS = ("health status", "health")
ERROR_CODE_KEYS = ("error code",)
ERROR_INFO_KEYS = ("error information",)


@dataclass
class NpuChip:
    """One chip row pair of the `npu-smi info` table, with its place on the board."""

    npu_id: int
    chip_id: int
    logical_id: int | None
    health: str | None
    reading: SmiReading


def parse_info_table(text: str) -> list[NpuChip]:
    """Every chip of `npu-smi info`; a malformed row pair loses that chip only."""
    version_match = _VERSION.search(text)
    driver_version = version_match.group(1) if version_match else None
    logical_column = re.search(r"\|\s*Chip\s+Device\s", text) is not None
    chips: list[NpuChip] = []
    for first, second in row_pairs(text, stop="Process id", is_header=_is_header):
        chip = _chip(first, second, logical_column=logical_column, driver_version=driver_version)
        if chip is not None:
            chips.append(chip)
    _assign_indexes(chips)
    return chips


def _is_header(cells: list[str]) -> bool:
    return cells[0].startswith(("NPU", "Chip", "npu-smi"))


def _chip(first: list[str], second: list[str], *, logical_column: bool, driver_version: str | None) -> NpuChip | None:
    try:
        npu_text, name = first[0].split(None, 1)
        chip_fields = second[0].split()
        power_text, temperature_text = first[2].split()[:2]
        usage = second[2]
        aicore_text = usage.split()[0]
        pairs = [(int(used), int(total)) for used, total in _PAIR.findall(usage)]
        npu_id, chip_id = int(npu_text), int(chip_fields[0])
    except (ValueError, IndexError):
        log.debug("npu-smi row pair not understood, chip skipped: %r %r", first, second)
        return None
    used_mib, total_mib = next(((u, t) for u, t in reversed(pairs) if t > 0), (None, None))
    health = text_or_none(first[1])
    reading = SmiReading(
        index=0,
        model=name.strip() if name.strip().lower().startswith("ascend") else f"Ascend {name.strip()}",
        bus_id=text_or_none(second[1]),
        driver_version=driver_version,
        temperature_c=number(temperature_text),
        power_w=number(power_text),
        utilization_ratio=percent_ratio(aicore_text),
        memory_used_bytes=used_mib * MIB_BYTES if used_mib is not None else None,
        memory_total_bytes=total_mib * MIB_BYTES if total_mib is not None else None,
        health_status=HEALTH_STATUS.get(health.lower(), HEALTH_WARNING) if health else None,
    )
    logical_id = int(chip_fields[1]) if logical_column and len(chip_fields) > 1 and chip_fields[1].isdigit() else None
    return NpuChip(npu_id=npu_id, chip_id=chip_id, logical_id=logical_id, health=health, reading=reading)


def _assign_indexes(chips: list[NpuChip]) -> None:
    # torch_npu and ASCEND_RT_VISIBLE_DEVICES count chips by logical id: the table's Device column where it has
    # one (310P), else the chips' order on the board, which is how the driver numbers them.
    ordered = sorted(chips, key=lambda chip: (chip.npu_id, chip.chip_id))
    for position, chip in enumerate(ordered):
        chip.reading.index = chip.logical_id if chip.logical_id is not None else position


def parse_key_values(text: str) -> list[dict[str, str]]:
    """The blank-line separated blocks of a `npu-smi info -t TYPE` output, keys lowercased."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, sep, value = line.partition(":")
        if sep:
            blocks[-1][" ".join(key.lower().split())] = value.strip()
    return [block for block in blocks if block]


def _first(block: dict[str, str], keys: Iterable[str]) -> str | None:
    return next((block[key] for key in keys if key in block), None)


def parse_chip_details(text: str) -> dict[int, SmiReading]:
    """Per chip id, what `npu-smi info -t common|temp|power|usages|memory` says; the MCU block is left out."""
    details: dict[int, SmiReading] = {}
    for block in parse_key_values(text):
        if block.get("chip name", "").lower() == "mcu":
            continue
        chip_id = number(block.get("chip id", "0"))
        reading = SmiReading(
            index=int(chip_id) if chip_id is not None else 0,
            temperature_c=number(_first(block, TEMPERATURE_KEYS)),
            memory_temperature_c=number(_first(block, HBM_TEMPERATURE_KEYS)),
            power_w=number(_first(block, POWER_KEYS)),
            sm_clock_mhz=number(_first(block, CLOCK_KEYS)),
            utilization_ratio=percent_ratio(_first(block, AICORE_KEYS)),
        )
        hbm_mib = number(_first(block, HBM_CAPACITY_KEYS))
        capacity_mib = hbm_mib if hbm_mib else number(_first(block, DDR_CAPACITY_KEYS))
        if capacity_mib:
            reading.memory_total_bytes = capacity_mib * MIB_BYTES
        if any(value is not None for value in _values(reading)):
            details.setdefault(reading.index, reading)
    return details


def _values(reading: SmiReading) -> tuple[float | None, ...]:
    return (
        reading.temperature_c,
        reading.memory_temperature_c,
        reading.power_w,
        reading.sm_clock_mhz,
        reading.utilization_ratio,
        reading.memory_total_bytes,
    )


def parse_health(text: str) -> tuple[int | None, list[SmiFault]]:
    """Health status and faults of `npu-smi info -t health -i N -c C`; NA codes are no fault."""
    block: dict[str, str] = {}
    for found in parse_key_values(text):
        block.update(found)
    state = _first(block, HEALTH_KEYS)
    status = HEALTH_STATUS.get(state.lower(), HEALTH_WARNING) if state else None
    if status in (None, HEALTH_OK):
        return status, []
    information = text_or_none(_first(block, ERROR_INFO_KEYS)) or f"health {state}"
    raw = "; ".join(f"{key}: {value}" for key, value in block.items())
    codes = [int(code, 16) for code in _FAULT_CODE.findall(_first(block, ERROR_CODE_KEYS) or "")]
    fallback = HEALTH_SEVERITY.get((state or "").lower(), "warning")
    if not codes:
        return status, [SmiFault(None, fallback, information, raw)]
    return status, [
        SmiFault(code, CODE_SEVERITY.get(code, fallback), f"{code:08X}: {information}", raw) for code in codes
    ]


class NpuSmiCollector(SmiCollector):
    """Ascend NPUs: health, power, temperature, AI Core use and clock, memory and fault codes."""

    name: ClassVar[str] = "npu_smi"
    backend: ClassVar[str] = "npu"
    vendor: ClassVar[str] = "huawei"
    default_model: ClassVar[str] = "Ascend NPU"

    def __init__(self, settings: AgentSettings, run: Runner | None = None) -> None:
        super().__init__(settings, run)
        self._details: dict[int, dict[int, SmiReading]] = {}
        self._details_time_s: dict[int, float] = {}

    def read(self, now_s: float) -> list[SmiReading]:
        text = self._run(["npu-smi", "info"])
        if text is None:
            return []
        chips = parse_info_table(text)
        fresh = {npu_id for npu_id in sorted({chip.npu_id for chip in chips}) if self._refresh_details(npu_id, now_s)}
        for chip in chips:
            detail = self._details.get(chip.npu_id, {}).get(chip.chip_id) if chip.npu_id in fresh else None
            if detail is not None:
                chip.reading.sm_clock_mhz = detail.sm_clock_mhz
            if chip.reading.health_status not in (None, HEALTH_OK):
                self._add_faults(chip)
        return [chip.reading for chip in chips]

    def _refresh_details(self, npu_id: int, now_s: float) -> bool:
        last_s = self._details_time_s.get(npu_id)
        if last_s is not None and now_s - last_s < DETAIL_INTERVAL_S:
            return False
        self._details_time_s[npu_id] = now_s
        text = self._run(["npu-smi", "info", "-t", "common", "-i", str(npu_id)])
        self._details[npu_id] = parse_chip_details(text) if text is not None else {}
        return True

    def _add_faults(self, chip: NpuChip) -> None:
        text = self._run(["npu-smi", "info", "-t", "health", "-i", str(chip.npu_id), "-c", str(chip.chip_id)])
        if text is None:
            severity = HEALTH_SEVERITY.get((chip.health or "").lower(), "warning")
            chip.reading.faults = [SmiFault(None, severity, f"health {chip.health}", f"npu-smi info: {chip.health}")]
            return
        status, faults = parse_health(text)
        if status is not None:
            chip.reading.health_status = status
        chip.reading.faults = faults

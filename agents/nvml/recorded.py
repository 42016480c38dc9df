"""A hand-written NVML fed from recorded readings of a real GPU, for tests and demos without one.

The readings are the format of tests/fixtures/nvidia-h200/nvml-readings.json: one NVML call per key, with
`ERR NVMLError_<Name>: ...` where the call failed. A key that was not recorded answers "not supported".
"""

from __future__ import annotations

import ast
import json
import queue
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from agents.nvml.provider import (
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_INVALID_ARGUMENT,
    ERROR_NOT_SUPPORTED,
    ERROR_TIMEOUT,
    ERROR_UNKNOWN,
    EVENT_DOUBLE_BIT_ECC,
    EVENT_SINGLE_BIT_ECC,
    EVENT_XID_CRITICAL,
    FI_ECC_CURRENT,
    FI_ECC_DBE_AGG_TOTAL,
    FI_ECC_DBE_VOL_TOTAL,
    FI_ECC_SBE_AGG_TOTAL,
    FI_ECC_SBE_VOL_TOTAL,
    FI_MEMORY_TEMP,
    FI_PCIE_REPLAY_COUNTER,
    FI_REMAPPED_COR,
    FI_REMAPPED_FAILURE,
    FI_REMAPPED_PENDING,
    FI_REMAPPED_UNC,
    FI_RETIRED_DBE,
    FI_RETIRED_PENDING,
    FI_RETIRED_SBE,
    FI_TOTAL_ENERGY_CONSUMPTION,
    Clock,
    DeviceHandle,
    EventSet,
    FieldValue,
    MemoryInfo,
    NvmlError,
    NvmlEvent,
    Policy,
    Threshold,
    Utilization,
)

_ERROR_CODES = {
    "InvalidArgument": ERROR_INVALID_ARGUMENT,
    "NotSupported": ERROR_NOT_SUPPORTED,
    "Timeout": ERROR_TIMEOUT,
    "FunctionNotFound": ERROR_FUNCTION_NOT_FOUND,
    "GpuIsLost": ERROR_GPU_IS_LOST,
}
_ERROR = re.compile(r"^ERR NVMLError_(\w+)")
_STRUCT_FIELD = re.compile(r"(\w+): (-?\d+)")

# Field id → (recorded key, position in a recorded tuple or None).
_FIELDS: dict[int, tuple[str, int | None]] = {
    FI_ECC_CURRENT: ("ecc_mode", 0),
    FI_ECC_SBE_VOL_TOTAL: ("ecc_vol_corr", None),
    FI_ECC_DBE_VOL_TOTAL: ("ecc_vol_uncorr", None),
    FI_ECC_SBE_AGG_TOTAL: ("ecc_agg_corr", None),
    FI_ECC_DBE_AGG_TOTAL: ("ecc_agg_uncorr", None),
    FI_RETIRED_SBE: ("retired_pages_sbe", None),
    FI_RETIRED_DBE: ("retired_pages_dbe", None),
    FI_RETIRED_PENDING: ("retired_pages_pending", None),
    FI_MEMORY_TEMP: ("temp_mem_hbm_field", None),
    FI_TOTAL_ENERGY_CONSUMPTION: ("energy_mj", None),
    FI_PCIE_REPLAY_COUNTER: ("pcie_replay", None),
    FI_REMAPPED_COR: ("remapped_rows", 0),
    FI_REMAPPED_UNC: ("remapped_rows", 1),
    FI_REMAPPED_PENDING: ("remapped_rows", 2),
    FI_REMAPPED_FAILURE: ("remapped_rows", 3),
}
_RECORDED_EVENTS = EVENT_XID_CRITICAL | EVENT_SINGLE_BIT_ECC | EVENT_DOUBLE_BIT_ECC


def _struct(text: str) -> dict[str, int]:
    """`c_nvmlMemory_t(total: 1 B, free: 2 B)` → {"total": 1, "free": 2}."""
    return {name: int(number) for name, number in _STRUCT_FIELD.findall(text)}


def _normalise(key: str, value: object) -> object:
    """A recorded value as the provider returns it; a recorded failure as the NvmlError it raised."""
    if isinstance(value, str) and (error := _ERROR.match(value)):
        return NvmlError(_ERROR_CODES.get(error.group(1), ERROR_UNKNOWN), value)
    if key == "util" and isinstance(value, str):
        rates = _struct(value)
        return Utilization(gpu_percent=rates["gpu"], memory_percent=rates["memory"])
    if key == "meminfo" and isinstance(value, str):
        memory = _struct(value)
        return MemoryInfo(total_bytes=memory["total"], used_bytes=memory["used"])
    if key.startswith("violation_") and isinstance(value, str):
        return _struct(value)["violationTime"]
    if key == "remapped_rows" and isinstance(value, str):
        return tuple(ast.literal_eval(value))
    if key == "temp_mem_hbm_field" and isinstance(value, list):
        reading, code = value[0]  # [[value, nvmlReturn]] as nvmlDeviceGetFieldValues answered
        return NvmlError(code) if code else reading
    return value


def _smi_extras(xml_path: Path) -> dict[str, object]:
    """What `nvidia-smi -q -x` of the same GPU adds to the NVML readings: VBIOS, max link, max memory clock."""
    gpu = ElementTree.parse(xml_path).getroot().find("gpu")
    if gpu is None:
        return {}

    def number(path: str) -> int | None:
        text = (gpu.findtext(path) or "").split(" ")[0].removesuffix("x")
        return int(text) if text.isdigit() else None

    extras: dict[str, object | None] = {
        "vbios_version": gpu.findtext("vbios_version"),
        "clock_mem_max": number("max_clocks/mem_clock"),
        "pcie_link_gen_max": number("pci/pci_gpu_link_info/pcie_gen/max_link_gen"),
        "pcie_link_width_max": number("pci/pci_gpu_link_info/link_widths/max_link_width"),
    }
    sram, dram = number("ecc_errors/aggregate/sram_correctable"), number("ecc_errors/aggregate/dram_correctable")
    if sram is not None and dram is not None:
        extras["ecc_agg_corr"] = sram + dram
    return {key: value for key, value in extras.items() if value is not None}


def load_recorded_readings(directory: Path) -> dict[str, object]:
    """nvml-readings.json of `directory`, completed by its nvidia-smi-q.xml where there is one."""
    readings: dict[str, object] = json.loads((directory / "nvml-readings.json").read_text())
    xml_path = directory / "nvidia-smi-q.xml"
    if xml_path.exists():
        for key, value in _smi_extras(xml_path).items():
            readings.setdefault(key, value)
    return readings


class RecordedNvml:
    """NVML answering from recorded readings, one mapping per device; tests change values and inject events."""

    def __init__(self, devices: Sequence[Mapping[str, object]], *, init_error: NvmlError | None = None) -> None:
        self._devices = [{key: _normalise(key, value) for key, value in device.items()} for device in devices]
        self._init_error = init_error
        self._events: queue.Queue[NvmlEvent] = queue.Queue()
        self._registered: dict[tuple[int, int], int] = {}  # (event set, device index) → event types
        self.calls: Counter[str] = Counter()
        self.initialised = False
        self.open_event_sets = 0
        self._event_sets_created = 0

    @classmethod
    def from_fixture(cls, directory: Path) -> RecordedNvml:
        """One device answering as the GPU recorded in `directory`."""
        return cls([load_recorded_readings(directory)])

    def set(self, index: int, key: str, value: object) -> None:
        """Make device `index` answer `value` for `key` from now on."""
        self._devices[index][key] = _normalise(key, value)

    def fail(self, index: int, key: str, code: int) -> None:
        """Make device `index` fail reads of `key` with NVML return code `code`."""
        self._devices[index][key] = NvmlError(code, f"{key}: injected NVML error {code}")

    def inject_event(self, index: int, event_type: int, data: int = 0) -> None:
        """Deliver an event from device `index` to the event sets registered for its type."""
        uuid = self._devices[index].get("uuid")
        self._events.put(NvmlEvent(uuid=uuid if isinstance(uuid, str) else None, event_type=event_type, data=data))

    def _read(self, handle: DeviceHandle, key: str) -> object:
        self.calls[key] += 1
        value = self._devices[self._index(handle)].get(key, NvmlError(ERROR_NOT_SUPPORTED, f"{key} not recorded"))
        if isinstance(value, NvmlError):
            raise value
        return value

    def _index(self, handle: DeviceHandle) -> int:
        if not isinstance(handle, int) or not 0 <= handle < len(self._devices):
            raise NvmlError(ERROR_INVALID_ARGUMENT, f"no device {handle!r}")
        return handle

    def _number(self, handle: DeviceHandle, key: str) -> int:
        value = self._read(handle, key)
        assert isinstance(value, int | float), f"{key} holds {value!r}"
        return int(value)

    def init(self) -> None:
        if self._init_error is not None:
            raise self._init_error
        self.initialised = True

    def shutdown(self) -> None:
        self.initialised = False

    def driver_version(self) -> str:
        return str(self._devices[0].get("driver", "")) if self._devices else ""

    def device_count(self) -> int:
        return len(self._devices)

    def handle(self, index: int) -> DeviceHandle:
        return self._index(index)

    def name(self, handle: DeviceHandle) -> str:
        return str(self._read(handle, "name"))

    def uuid(self, handle: DeviceHandle) -> str:
        return str(self._read(handle, "uuid"))

    def serial(self, handle: DeviceHandle) -> str:
        return str(self._read(handle, "serial"))

    def pci_bus_id(self, handle: DeviceHandle) -> str:
        return str(self._read(handle, "pci_bus_id"))

    def vbios_version(self, handle: DeviceHandle) -> str:
        return str(self._read(handle, "vbios_version"))

    def memory_info(self, handle: DeviceHandle) -> MemoryInfo:
        memory = self._read(handle, "meminfo")
        assert isinstance(memory, MemoryInfo)
        return memory

    def temperature_c(self, handle: DeviceHandle) -> int:
        return self._number(handle, "temp_gpu")

    def temperature_threshold_c(self, handle: DeviceHandle, threshold: Threshold) -> int:
        return self._number(handle, f"temp_threshold_{threshold}")

    def power_mw(self, handle: DeviceHandle) -> int:
        return self._number(handle, "power_mw")

    def power_limit_mw(self, handle: DeviceHandle) -> int:
        return self._number(handle, "power_limit_mw")

    def clock_mhz(self, handle: DeviceHandle, clock: Clock) -> int:
        return self._number(handle, f"clock_{clock}")

    def max_clock_mhz(self, handle: DeviceHandle, clock: Clock) -> int:
        return self._number(handle, f"clock_{clock}_max")

    def clock_event_reasons(self, handle: DeviceHandle) -> int:
        return self._number(handle, "throttle_reasons")

    def utilization(self, handle: DeviceHandle) -> Utilization:
        rates = self._read(handle, "util")
        assert isinstance(rates, Utilization)
        return rates

    def performance_state(self, handle: DeviceHandle) -> int:
        return self._number(handle, "perf_state")

    def violation_ns(self, handle: DeviceHandle, policy: Policy) -> int:
        return self._number(handle, f"violation_{policy}")

    def fan_speed_percent(self, handle: DeviceHandle) -> int:
        return self._number(handle, "fan")

    def pcie_link_generation(self, handle: DeviceHandle, *, maximum: bool) -> int:
        return self._number(handle, "pcie_link_gen_max" if maximum else "pcie_link_gen")

    def pcie_link_width(self, handle: DeviceHandle, *, maximum: bool) -> int:
        return self._number(handle, "pcie_link_width_max" if maximum else "pcie_link_width")

    def nvlink_active(self, handle: DeviceHandle, link: int) -> bool:
        return bool(self._number(handle, f"nvlink{link}_state"))

    def field_values(self, handle: DeviceHandle, field_ids: Sequence[int]) -> list[FieldValue]:
        self.calls["field_values"] += 1
        answers: list[FieldValue] = []
        for field_id in field_ids:
            key, position = _FIELDS.get(field_id, (f"field_{field_id}", None))
            try:
                value = self._read(handle, key)
            except NvmlError as error:
                answers.append(FieldValue(field_id, None, error))
                continue
            if position is not None:
                assert isinstance(value, tuple | list)
                value = value[position]
            assert isinstance(value, int | float)
            answers.append(FieldValue(field_id, float(value)))
        return answers

    def supported_event_types(self, handle: DeviceHandle) -> int:
        self._read(handle, "xid_event_set")
        return _RECORDED_EVENTS

    def event_set_create(self) -> EventSet:
        self._event_sets_created += 1
        self.open_event_sets += 1
        return self._event_sets_created

    def register_events(self, handle: DeviceHandle, event_types: int, event_set: EventSet) -> None:
        assert isinstance(event_set, int)
        self._registered[(event_set, self._index(handle))] = event_types

    def event_wait(self, event_set: EventSet, timeout_ms: int) -> NvmlEvent | None:
        try:
            event = self._events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return None
        for (registered_set, index), types in self._registered.items():
            if registered_set == event_set and self._devices[index].get("uuid") == event.uuid:
                return event if types & event.event_type else None
        return None

    def event_set_free(self, event_set: EventSet) -> None:
        self.open_event_sets -= 1

"""The NVML calls the collector needs, as a protocol, and the real implementation over nvidia-ml-py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

DeviceHandle: TypeAlias = object
EventSet: TypeAlias = object
Clock = Literal["sm", "mem"]
Threshold = Literal["slowdown", "shutdown"]
Policy = Literal["power", "thermal"]

# nvmlReturn_t codes the collector tells apart (nvml.h).
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_TIMEOUT = 10
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_UNKNOWN = 999

# Field ids for nvmlDeviceGetFieldValues (nvml.h NVML_FI_DEV_*, checked against nvidia-ml-py 13.615).
FI_ECC_CURRENT = 1  # 1 = ECC active
FI_ECC_SBE_VOL_TOTAL = 3  # corrected (single-bit) errors since the driver loaded
FI_ECC_DBE_VOL_TOTAL = 4  # uncorrected (double-bit) errors since the driver loaded
FI_ECC_SBE_AGG_TOTAL = 5  # corrected errors over the board's life
FI_ECC_DBE_AGG_TOTAL = 6  # uncorrected errors over the board's life
FI_RETIRED_SBE = 29  # pages retired for repeated single-bit errors (pre-Ampere)
FI_RETIRED_DBE = 30  # pages retired for double-bit errors (pre-Ampere)
FI_RETIRED_PENDING = 31  # 1 = a retirement waits for the next reset
FI_MEMORY_TEMP = 82  # HBM / memory temperature, °C
FI_TOTAL_ENERGY_CONSUMPTION = 83  # mJ since the driver loaded
FI_PCIE_REPLAY_COUNTER = 94  # PCIe replays
FI_REMAPPED_COR = 142  # rows remapped for correctable errors (Ampere+)
FI_REMAPPED_UNC = 143  # rows remapped for uncorrectable errors
FI_REMAPPED_PENDING = 144  # 1 = a remap waits for the next reset
FI_REMAPPED_FAILURE = 145  # 1 = a remap has failed

# nvmlEventType bits.
EVENT_SINGLE_BIT_ECC = 0x1
EVENT_DOUBLE_BIT_ECC = 0x2
EVENT_XID_CRITICAL = 0x8

NVLINK_MAX_LINKS = 36  # NVML_NVLINK_MAX_LINKS: links past a device's last one answer with an error
PSTATE_UNKNOWN = 32


class NvmlError(Exception):
    """An NVML call failed with return code `code`."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"NVML error {code}")
        self.code = code

    @property
    def unsupported(self) -> bool:
        """The device or driver cannot answer this call: no data, and no point asking again."""
        return self.code in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND)


@dataclass(frozen=True)
class MemoryInfo:
    """Device memory."""

    total_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class Utilization:
    """Percent of the last sample period the GPU (and its memory controller) was busy."""

    gpu_percent: int
    memory_percent: int


@dataclass(frozen=True)
class FieldValue:
    """One answer of a batched field read: a value or the error for that field alone."""

    field_id: int
    value: float | None
    error: NvmlError | None = None


@dataclass(frozen=True)
class NvmlEvent:
    """An event from nvmlEventSetWait; `data` is the XID code for XID events."""

    uuid: str | None
    event_type: int
    data: int


class Nvml(Protocol):
    """The NVML calls the collector makes; every call raises NvmlError on failure."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def device_count(self) -> int: ...
    def handle(self, index: int) -> DeviceHandle: ...
    def name(self, handle: DeviceHandle) -> str: ...
    def uuid(self, handle: DeviceHandle) -> str: ...
    def serial(self, handle: DeviceHandle) -> str: ...
    def pci_bus_id(self, handle: DeviceHandle) -> str: ...
    def vbios_version(self, handle: DeviceHandle) -> str: ...
    def memory_info(self, handle: DeviceHandle) -> MemoryInfo: ...
    def temperature_c(self, handle: DeviceHandle) -> int: ...
    def temperature_threshold_c(self, handle: DeviceHandle, threshold: Threshold) -> int: ...
    def power_mw(self, handle: DeviceHandle) -> int: ...
    def power_limit_mw(self, handle: DeviceHandle) -> int: ...
    def clock_mhz(self, handle: DeviceHandle, clock: Clock) -> int: ...
    def max_clock_mhz(self, handle: DeviceHandle, clock: Clock) -> int: ...
    def clock_event_reasons(self, handle: DeviceHandle) -> int: ...
    def utilization(self, handle: DeviceHandle) -> Utilization: ...
    def performance_state(self, handle: DeviceHandle) -> int: ...
    def violation_ns(self, handle: DeviceHandle, policy: Policy) -> int: ...
    def fan_speed_percent(self, handle: DeviceHandle) -> int: ...
    def pcie_link_generation(self, handle: DeviceHandle, *, maximum: bool) -> int: ...
    def pcie_link_width(self, handle: DeviceHandle, *, maximum: bool) -> int: ...
    def nvlink_active(self, handle: DeviceHandle, link: int) -> bool: ...

    def field_values(self, handle: DeviceHandle, field_ids: Sequence[int]) -> list[FieldValue]:
        """Several fields in one call; a field the device cannot answer carries its own error."""
        ...

    def supported_event_types(self, handle: DeviceHandle) -> int: ...
    def event_set_create(self) -> EventSet: ...
    def register_events(self, handle: DeviceHandle, event_types: int, event_set: EventSet) -> None: ...

    def event_wait(self, event_set: EventSet, timeout_ms: int) -> NvmlEvent | None:
        """The next event, or None when none came within the timeout."""
        ...

    def event_set_free(self, event_set: EventSet) -> None: ...


# nvmlValueType_t → the member of the nvmlValue_t union that holds the value.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class PynvmlProvider:
    """NVML through nvidia-ml-py, imported on init() so that a machine without it or its driver still runs."""

    def __init__(self) -> None:
        self._lib: Any = None

    def _call(self, function: str, *args: object) -> Any:
        if self._lib is None:
            raise NvmlError(ERROR_LIBRARY_NOT_FOUND, "NVML is not initialised")
        call = getattr(self._lib, function, None)
        if call is None:
            raise NvmlError(ERROR_FUNCTION_NOT_FOUND, f"{function} is not in this nvidia-ml-py")
        try:
            return call(*args)
        except self._lib.NVMLError as error:
            raise NvmlError(int(error.value), f"{function}: {error}") from error

    def init(self) -> None:
        try:
            import pynvml  # type: ignore[import-untyped]
        except ImportError as error:
            raise NvmlError(ERROR_LIBRARY_NOT_FOUND, "nvidia-ml-py is not installed") from error
        self._lib = pynvml
        try:
            self._call("nvmlInit")
        except NvmlError:
            self._lib = None
            raise

    def shutdown(self) -> None:
        if self._lib is not None:
            self._call("nvmlShutdown")
            self._lib = None

    def driver_version(self) -> str:
        return _text(self._call("nvmlSystemGetDriverVersion"))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> DeviceHandle:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def name(self, handle: DeviceHandle) -> str:
        return _text(self._call("nvmlDeviceGetName", handle))

    def uuid(self, handle: DeviceHandle) -> str:
        return _text(self._call("nvmlDeviceGetUUID", handle))

    def serial(self, handle: DeviceHandle) -> str:
        return _text(self._call("nvmlDeviceGetSerial", handle))

    def pci_bus_id(self, handle: DeviceHandle) -> str:
        return _text(self._call("nvmlDeviceGetPciInfo", handle).busId)

    def vbios_version(self, handle: DeviceHandle) -> str:
        return _text(self._call("nvmlDeviceGetVbiosVersion", handle))

    def memory_info(self, handle: DeviceHandle) -> MemoryInfo:
        memory = self._call("nvmlDeviceGetMemoryInfo", handle)
        return MemoryInfo(total_bytes=int(memory.total), used_bytes=int(memory.used))

    def temperature_c(self, handle: DeviceHandle) -> int:
        return int(self._call("nvmlDeviceGetTemperature", handle, self._lib.NVML_TEMPERATURE_GPU))

    def temperature_threshold_c(self, handle: DeviceHandle, threshold: Threshold) -> int:
        kind = {
            "slowdown": self._lib.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
            "shutdown": self._lib.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN,
        }[threshold]
        return int(self._call("nvmlDeviceGetTemperatureThreshold", handle, kind))

    def power_mw(self, handle: DeviceHandle) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", handle))

    def power_limit_mw(self, handle: DeviceHandle) -> int:
        return int(self._call("nvmlDeviceGetEnforcedPowerLimit", handle))

    def _clock_type(self, clock: Clock) -> int:
        return int({"sm": self._lib.NVML_CLOCK_SM, "mem": self._lib.NVML_CLOCK_MEM}[clock])

    def clock_mhz(self, handle: DeviceHandle, clock: Clock) -> int:
        return int(self._call("nvmlDeviceGetClockInfo", handle, self._clock_type(clock)))

    def max_clock_mhz(self, handle: DeviceHandle, clock: Clock) -> int:
        return int(self._call("nvmlDeviceGetMaxClockInfo", handle, self._clock_type(clock)))

    def clock_event_reasons(self, handle: DeviceHandle) -> int:
        try:
            return int(self._call("nvmlDeviceGetCurrentClocksEventReasons", handle))
        except NvmlError as error:
            if error.code != ERROR_FUNCTION_NOT_FOUND:
                raise
        # Drivers before R535 only have the older name of the same bitmask.
        return int(self._call("nvmlDeviceGetCurrentClocksThrottleReasons", handle))

    def utilization(self, handle: DeviceHandle) -> Utilization:
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        return Utilization(gpu_percent=int(rates.gpu), memory_percent=int(rates.memory))

    def performance_state(self, handle: DeviceHandle) -> int:
        return int(self._call("nvmlDeviceGetPerformanceState", handle))

    def violation_ns(self, handle: DeviceHandle, policy: Policy) -> int:
        kind = {"power": self._lib.NVML_PERF_POLICY_POWER, "thermal": self._lib.NVML_PERF_POLICY_THERMAL}[policy]
        return int(self._call("nvmlDeviceGetViolationStatus", handle, kind).violationTime)

    def fan_speed_percent(self, handle: DeviceHandle) -> int:
        return int(self._call("nvmlDeviceGetFanSpeed", handle))

    def pcie_link_generation(self, handle: DeviceHandle, *, maximum: bool) -> int:
        function = "nvmlDeviceGetMaxPcieLinkGeneration" if maximum else "nvmlDeviceGetCurrPcieLinkGeneration"
        return int(self._call(function, handle))

    def pcie_link_width(self, handle: DeviceHandle, *, maximum: bool) -> int:
        function = "nvmlDeviceGetMaxPcieLinkWidth" if maximum else "nvmlDeviceGetCurrPcieLinkWidth"
        return int(self._call(function, handle))

    def nvlink_active(self, handle: DeviceHandle, link: int) -> bool:
        return bool(self._call("nvmlDeviceGetNvLinkState", handle, link))

    def field_values(self, handle: DeviceHandle, field_ids: Sequence[int]) -> list[FieldValue]:
        answers: list[FieldValue] = []
        for field in self._call("nvmlDeviceGetFieldValues", handle, list(field_ids)):
            code = int(field.nvmlReturn)
            member = _VALUE_MEMBERS.get(int(field.valueType))
            if code != 0 or member is None:
                error = NvmlError(code or ERROR_UNKNOWN, f"field {field.fieldId}: NVML error {code}")
                answers.append(FieldValue(int(field.fieldId), None, error))
            else:
                answers.append(FieldValue(int(field.fieldId), float(getattr(field.value, member))))
        return answers

    def supported_event_types(self, handle: DeviceHandle) -> int:
        return int(self._call("nvmlDeviceGetSupportedEventTypes", handle))

    def event_set_create(self) -> EventSet:
        return self._call("nvmlEventSetCreate")

    def register_events(self, handle: DeviceHandle, event_types: int, event_set: EventSet) -> None:
        self._call("nvmlDeviceRegisterEvents", handle, event_types, event_set)

    def event_wait(self, event_set: EventSet, timeout_ms: int) -> NvmlEvent | None:
        try:
            data = self._call("nvmlEventSetWait", event_set, timeout_ms)
        except NvmlError as error:
            if error.code == ERROR_TIMEOUT:
                return None
            raise
        try:
            uuid: str | None = self.uuid(data.device)
        except NvmlError:
            uuid = None  # an event not attributable to one device
        return NvmlEvent(uuid=uuid, event_type=int(data.eventType), data=int(data.eventData))

    def event_set_free(self, event_set: EventSet) -> None:
        self._call("nvmlEventSetFree", event_set)

"""NVIDIA GPUs through NVML: fast readings every cycle, slow counters every slow interval, driver events as heard.

A reading the device does not support is remembered and never asked again; any other NVML error loses only
that reading for that cycle. Without the library, the driver or a GPU, the collector has no devices and no data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, TypeVar

from agents.collectors.base import CollectContext, Collected
from agents.collectors.nvml_events import NvmlEventListener
from agents.config import AgentSettings
from agents.nvml.clock_events import GPU_IDLE, decode_clock_events
from agents.nvml.provider import (
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
    NVLINK_MAX_LINKS,
    PSTATE_UNKNOWN,
    DeviceHandle,
    Nvml,
    NvmlError,
    PynvmlProvider,
)
from soak.nodes.schemas import DeviceIn

log = logging.getLogger(__name__)
SLOW_INTERVAL_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class _Read:
    """One NVML call and the samples it yields, under a key remembered when the device cannot answer."""

    key: str
    read: Callable[[Nvml, DeviceHandle], dict[str, float]]


@dataclass(frozen=True)
class _Field:
    """One field of a batched nvmlDeviceGetFieldValues call."""

    field_id: int
    metric: str
    scale: float = 1.0


def _clock_events(nvml: Nvml, handle: DeviceHandle) -> dict[str, float]:
    mask = nvml.clock_event_reasons(handle)
    flags = decode_clock_events(mask)
    return {"device.clock_event_reasons": mask} | {
        f"device.clock_event.{name}": float(on) for name, on in flags.items()
    }


def _pstate(nvml: Nvml, handle: DeviceHandle) -> dict[str, float]:
    state = nvml.performance_state(handle)
    return {} if state == PSTATE_UNKNOWN else {"device.pstate": state}


def _active_nvlinks(nvml: Nvml, handle: DeviceHandle) -> dict[str, float]:
    active = 0
    for link in range(NVLINK_MAX_LINKS):
        try:
            active += nvml.nvlink_active(handle, link)
        except NvmlError:
            if link == 0:
                raise  # no NVLink at all (or no answer): let the caller remember or report it
            break  # past the device's last link
    return {"device.nvlink_active_links": active}


FAST_READS: tuple[_Read, ...] = (
    _Read("temperature", lambda nvml, h: {"device.temperature_c": nvml.temperature_c(h)}),
    _Read("power", lambda nvml, h: {"device.power_w": nvml.power_mw(h) / 1000}),
    _Read("power_limit", lambda nvml, h: {"device.power_limit_w": nvml.power_limit_mw(h) / 1000}),
    _Read("sm_clock", lambda nvml, h: {"device.sm_clock_mhz": nvml.clock_mhz(h, "sm")}),
    _Read("mem_clock", lambda nvml, h: {"device.mem_clock_mhz": nvml.clock_mhz(h, "mem")}),
    _Read("clock_events", _clock_events),
    _Read(
        "utilization",
        lambda nvml, h: {
            "device.utilization_ratio": (rates := nvml.utilization(h)).gpu_percent / 100,
            "device.memory_utilization_ratio": rates.memory_percent / 100,
        },
    ),
    _Read(
        "memory",
        lambda nvml, h: {
            "device.memory_used_bytes": (memory := nvml.memory_info(h)).used_bytes,
            "device.memory_total_bytes": memory.total_bytes,
        },
    ),
    _Read("pstate", _pstate),
    _Read("violation_power", lambda nvml, h: {"device.violation_power_s": nvml.violation_ns(h, "power") / 1e9}),
    _Read("violation_thermal", lambda nvml, h: {"device.violation_thermal_s": nvml.violation_ns(h, "thermal") / 1e9}),
    _Read("fan", lambda nvml, h: {"device.fan_speed_ratio": nvml.fan_speed_percent(h) / 100}),
)

FAST_FIELDS: tuple[_Field, ...] = (
    _Field(FI_MEMORY_TEMP, "device.memory_temperature_c"),
    _Field(FI_TOTAL_ENERGY_CONSUMPTION, "device.energy_j", scale=1e-3),
)

SLOW_READS: tuple[_Read, ...] = (
    _Read(
        "temperature_slowdown",
        lambda nvml, h: {"device.temperature_slowdown_c": nvml.temperature_threshold_c(h, "slowdown")},
    ),
    _Read(
        "temperature_shutdown",
        lambda nvml, h: {"device.temperature_shutdown_c": nvml.temperature_threshold_c(h, "shutdown")},
    ),
    _Read("sm_clock_max", lambda nvml, h: {"device.sm_clock_max_mhz": nvml.max_clock_mhz(h, "sm")}),
    _Read("mem_clock_max", lambda nvml, h: {"device.mem_clock_max_mhz": nvml.max_clock_mhz(h, "mem")}),
    _Read("pcie_link_gen", lambda nvml, h: {"device.pcie_link_gen": nvml.pcie_link_generation(h, maximum=False)}),
    _Read(
        "pcie_link_gen_max", lambda nvml, h: {"device.pcie_link_gen_max": nvml.pcie_link_generation(h, maximum=True)}
    ),
    _Read("pcie_link_width", lambda nvml, h: {"device.pcie_link_width": nvml.pcie_link_width(h, maximum=False)}),
    _Read("pcie_link_width_max", lambda nvml, h: {"device.pcie_link_width_max": nvml.pcie_link_width(h, maximum=True)}),
    _Read("nvlink", _active_nvlinks),
)

SLOW_FIELDS: tuple[_Field, ...] = (
    _Field(FI_ECC_CURRENT, "device.ecc_enabled"),
    _Field(FI_ECC_SBE_VOL_TOTAL, "device.ecc_corrected_volatile_errors"),
    _Field(FI_ECC_DBE_VOL_TOTAL, "device.ecc_uncorrected_volatile_errors"),
    _Field(FI_ECC_SBE_AGG_TOTAL, "device.ecc_corrected_aggregate_errors"),
    _Field(FI_ECC_DBE_AGG_TOTAL, "device.ecc_uncorrected_aggregate_errors"),
    _Field(FI_REMAPPED_COR, "device.remapped_rows_correctable"),
    _Field(FI_REMAPPED_UNC, "device.remapped_rows_uncorrectable"),
    _Field(FI_REMAPPED_PENDING, "device.remapped_rows_pending"),
    _Field(FI_REMAPPED_FAILURE, "device.remapped_rows_failure"),
    _Field(FI_RETIRED_SBE, "device.retired_pages_single_bit"),
    _Field(FI_RETIRED_DBE, "device.retired_pages_double_bit"),
    _Field(FI_RETIRED_PENDING, "device.retired_pages_pending"),
    _Field(FI_PCIE_REPLAY_COUNTER, "device.pcie_replays"),
)


@dataclass
class _Gpu:
    """One GPU and what the collector remembers about it between cycles."""

    index: int
    name: str
    handle: DeviceHandle
    uuid: str | None
    bus_id: str | None
    unsupported: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    next_slow_s: float = 0.0
    idle: bool = False
    degraded_link: tuple[int, int] | None = None


class NvmlCollector:
    """Temperatures, power, energy, clocks and their limiters, memory, ECC, remapped rows, PCIe link, XIDs."""

    name: ClassVar[str] = "nvml"

    def __init__(
        self, settings: AgentSettings, provider: Nvml | None = None, *, slow_interval_s: float = SLOW_INTERVAL_S
    ) -> None:
        self._settings = settings
        self._provider: Nvml = provider if provider is not None else PynvmlProvider()
        self._slow_interval_s = slow_interval_s
        self._started = False
        self._gpus: list[_Gpu] = []
        self._devices: list[DeviceIn] = []
        self._listener: NvmlEventListener | None = None
        self._listener_tried = False

    def devices(self) -> list[DeviceIn]:
        self._start()
        return list(self._devices)

    def bus_ids(self) -> dict[str, str]:
        """NVML PCI bus id → device name, for sources that name GPUs by bus (the kernel log)."""
        self._start()
        return {gpu.bus_id: gpu.name for gpu in self._gpus if gpu.bus_id}

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        collected = Collected()
        if not self._start():
            return collected
        self._start_listener()
        for gpu in self._gpus:
            values = self._read(gpu, FAST_READS, FAST_FIELDS)
            if "device.clock_event_reasons" in values:
                gpu.idle = bool(int(values["device.clock_event_reasons"]) & GPU_IDLE)
            if now_s >= gpu.next_slow_s:
                gpu.next_slow_s = now_s + self._slow_interval_s
                slow = self._read(gpu, SLOW_READS, SLOW_FIELDS)
                values |= slow
                link_event = self._link_change(gpu, slow, now_s)
                if link_event is not None:
                    collected.events.append(link_event)
            for metric, value in values.items():
                collected.sample(now_s, metric, value, gpu.name)
        if self._listener is not None:
            collected.events.extend(self._listener.drain())
        return collected

    def close(self) -> None:
        """Stop the event listener and release NVML."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._gpus:
            self._gpus = []
            try:
                self._provider.shutdown()
            except NvmlError as error:
                log.info("nvml: shutdown failed: %s", error)

    def _start(self) -> bool:
        if not self._started:
            self._started = True
            try:
                self._provider.init()
            except NvmlError as error:
                log.info("nvml: no NVIDIA GPUs visible (%s)", error)
                return False
            count = self._optional(self._provider.device_count) or 0
            driver_version = self._optional(self._provider.driver_version)
            for index in range(count):
                self._open(index, driver_version)
            if not self._gpus:
                log.info("nvml: NVML found no usable GPU")
                self._optional(self._provider.shutdown)
        return bool(self._gpus)

    def _open(self, index: int, driver_version: str | None) -> None:
        try:
            handle = self._provider.handle(index)
        except NvmlError as error:
            log.warning("nvml: GPU %d cannot be opened: %s", index, error)
            return
        nvml = self._provider
        gpu = _Gpu(
            index=index,
            name=f"{self._settings.node_name}/cuda{index}",
            handle=handle,
            uuid=self._optional(lambda: nvml.uuid(handle)),
            bus_id=self._optional(lambda: nvml.pci_bus_id(handle)),
        )
        memory = self._optional(lambda: nvml.memory_info(handle))
        self._gpus.append(gpu)
        self._devices.append(
            DeviceIn(
                name=gpu.name,
                backend="cuda",
                index=index,
                vendor="nvidia",
                model=self._optional(lambda: nvml.name(handle)) or "NVIDIA GPU",
                uuid=gpu.uuid,
                serial=self._optional(lambda: nvml.serial(handle)),
                bus_id=gpu.bus_id,
                driver_version=driver_version,
                firmware_version=self._optional(lambda: nvml.vbios_version(handle)),
                memory_total_bytes=memory.total_bytes if memory else None,
            )
        )

    @staticmethod
    def _optional(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except NvmlError:
            return None

    def _start_listener(self) -> None:
        if self._listener_tried:
            return
        self._listener_tried = True
        listener = NvmlEventListener(
            self._provider, [(gpu.handle, gpu.uuid, gpu.name) for gpu in self._gpus if gpu.uuid]
        )
        if listener.start():
            self._listener = listener

    def _read(self, gpu: _Gpu, reads: tuple[_Read, ...], fields: tuple[_Field, ...]) -> dict[str, float]:
        values: dict[str, float] = {}
        for read in reads:
            values |= self._attempt(gpu, read.key, partial(read.read, self._provider, gpu.handle)) or {}
        wanted = [item for item in fields if f"field {item.field_id}" not in gpu.unsupported]
        if not wanted:
            return values
        answers = self._attempt(
            gpu, "field_values", lambda: self._provider.field_values(gpu.handle, [item.field_id for item in wanted])
        )
        for item, answer in zip(wanted, answers or [], strict=False):
            key = f"field {item.field_id}"
            if answer.error is not None:
                self._note_error(gpu, key, answer.error)
            elif answer.value is not None:
                gpu.failing.discard(key)
                values[item.metric] = answer.value * item.scale
        return values

    def _attempt(self, gpu: _Gpu, key: str, read: Callable[[], T]) -> T | None:
        if key in gpu.unsupported:
            return None
        try:
            value = read()
        except NvmlError as error:
            self._note_error(gpu, key, error)
            return None
        gpu.failing.discard(key)
        return value

    @staticmethod
    def _note_error(gpu: _Gpu, key: str, error: NvmlError) -> None:
        if error.unsupported:
            gpu.unsupported.add(key)
            log.info("nvml: %s does not support %s; not asking again", gpu.name, key)
        elif key not in gpu.failing:
            gpu.failing.add(key)
            log.warning("nvml: %s: reading %s failed (%s); other readings go on", gpu.name, key, error)

    @staticmethod
    def _link_change(gpu: _Gpu, values: dict[str, float], now_s: float) -> dict[str, Any] | None:
        """An event when the PCIe link falls below (or returns to) its maximum; idle GPUs legitimately downshift."""
        try:
            gen, gen_max = int(values["device.pcie_link_gen"]), int(values["device.pcie_link_gen_max"])
            width, width_max = int(values["device.pcie_link_width"]), int(values["device.pcie_link_width_max"])
        except KeyError:
            return None
        if gpu.idle:
            return None
        degraded = (gen, width) if gen < gen_max or width < width_max else None
        if degraded == gpu.degraded_link:
            return None
        gpu.degraded_link = degraded
        raw = f"pcie bus={gpu.bus_id} gen={gen}/{gen_max} width=x{width}/x{width_max}"
        event: dict[str, Any] = {"time_s": now_s, "device": gpu.name, "code": None, "raw": raw}
        if degraded is None:
            return {
                **event,
                "kind": "pcie_link_restored",
                "severity": "info",
                "message": f"PCIe link back at gen {gen} x{width}",
            }
        message = (
            f"PCIe link at gen {gen} x{width}, below its maximum gen {gen_max} x{width_max} while busy: "
            "reseat the card or check the riser and slot"
        )
        return {**event, "kind": "pcie_link_degraded", "severity": "warning", "message": message}

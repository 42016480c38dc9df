"""NVML events (XID critical errors, single- and double-bit ECC) heard in a daemon thread, queued for the collector."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from agents.nvml.provider import (
    EVENT_DOUBLE_BIT_ECC,
    EVENT_SINGLE_BIT_ECC,
    EVENT_XID_CRITICAL,
    DeviceHandle,
    EventSet,
    Nvml,
    NvmlError,
    NvmlEvent,
)
from agents.xid import classify

log = logging.getLogger(__name__)
WATCHED_EVENTS = EVENT_XID_CRITICAL | EVENT_SINGLE_BIT_ECC | EVENT_DOUBLE_BIT_ECC
MAX_QUEUED_EVENTS = 10_000
RETRY_AFTER_ERROR_S = 5.0


def event_record(event: NvmlEvent, device: str | None, time_s: float) -> dict[str, Any]:
    """An NVML event in the controller's event shape, XIDs classified with agents.xid."""
    raw = f"NVML event type=0x{event.event_type:x} data={event.data} uuid={event.uuid or 'unknown'}"
    record: dict[str, Any] = {"time_s": time_s, "device": device, "code": None, "raw": raw}
    if event.event_type & EVENT_XID_CRITICAL:
        xid = classify(event.data)
        message = f"XID {event.data} ({xid.title}): {xid.action}"
        return {**record, "kind": "driver_error", "severity": xid.severity, "code": event.data, "message": message}
    if event.event_type & EVENT_DOUBLE_BIT_ECC:
        message = "double-bit (uncorrectable) ECC error: take the device out of the campaign and check remapped rows"
        return {**record, "kind": "ecc_error", "severity": "critical", "message": message}
    return {**record, "kind": "ecc_error", "severity": "info", "message": "single-bit ECC error, corrected"}


class NvmlEventListener:
    """Waits on one NVML event set for all devices and keeps what it hears until the collector drains it."""

    def __init__(
        self,
        provider: Nvml,
        devices: Sequence[tuple[DeviceHandle, str, str]],
        *,
        wait_ms: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`devices` holds (handle, uuid, device name) per GPU; `wait_ms` bounds how long stop() waits."""
        self._provider = provider
        self._devices = devices
        self._names = {uuid: name for _, uuid, name in devices}
        self._wait_ms = wait_ms
        self._clock = clock
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: EventSet | None = None

    def start(self) -> bool:
        """Register every device for the events it supports and start listening; False when none can be heard."""
        try:
            event_set = self._provider.event_set_create()
        except NvmlError as error:
            log.info("nvml events: cannot create an event set (%s); no XID events from NVML", error)
            return False
        registered = 0
        for handle, uuid, name in self._devices:
            try:
                types = self._provider.supported_event_types(handle) & WATCHED_EVENTS
                if types:
                    self._provider.register_events(handle, types, event_set)
                    registered += 1
            except NvmlError as error:
                log.info("nvml events: %s (%s) cannot report events: %s", name, uuid, error)
        if not registered:
            self._provider.event_set_free(event_set)
            return False
        self._event_set = event_set
        self._thread = threading.Thread(target=self._listen, args=(event_set,), name="nvml-events", daemon=True)
        self._thread.start()
        return True

    def _listen(self, event_set: EventSet) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                event = self._provider.event_wait(event_set, self._wait_ms)
            except NvmlError as error:
                if not failing:
                    log.warning("nvml events: waiting failed (%s); retrying every %.0f s", error, RETRY_AFTER_ERROR_S)
                failing = True
                self._stop.wait(RETRY_AFTER_ERROR_S)
                continue
            failing = False
            if event is None:
                continue
            if len(self._events) == self._events.maxlen:
                log.warning("nvml events: %d events undelivered; dropping the oldest", len(self._events))
            device = self._names.get(event.uuid) if event.uuid else None
            self._events.append(event_record(event, device, self._clock()))

    def drain(self) -> list[dict[str, Any]]:
        """The events heard since the last drain, oldest first."""
        drained: list[dict[str, Any]] = []
        while self._events:
            drained.append(self._events.popleft())
        return drained

    def stop(self) -> None:
        """Stop listening and free the event set."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._wait_ms / 1000 + 1.0)
            if self._thread.is_alive():
                log.warning("nvml events: the listener did not stop in time; leaving its event set allocated")
                return
        if self._event_set is not None:
            try:
                self._provider.event_set_free(self._event_set)
            except NvmlError as error:
                log.info("nvml events: freeing the event set failed: %s", error)
            self._event_set = None

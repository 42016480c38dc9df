"""Accelerator driver errors from the kernel log: NVIDIA XIDs and AMD, Huawei Ascend, Cambricon and MetaX messages.

New lines come from /dev/kmsg read without blocking (from its end, so boot messages are not replayed), or
where it cannot be opened from `dmesg` output diffed since the last read. Neither readable: no data.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from agents.collectors.base import CollectContext, Collected
from agents.config import AgentSettings
from agents.xid import classify
from soak.nodes.schemas import DeviceIn

log = logging.getLogger(__name__)
DMESG_TIMEOUT_S = 10.0
MAX_RAW_CHARS = 16_000
FOLD_WINDOW_S = 1.0


@dataclass(frozen=True)
class KernelLine:
    """One kernel-log message and when it was logged (epoch seconds)."""

    time_s: float
    text: str


@dataclass(frozen=True)
class Finding:
    """What one kernel-log line says about an accelerator."""

    vendor: str
    severity: str
    title: str
    action: str
    code: int | None = None
    bus_id: str | None = None  # canonical dddd:bb:dd
    where: str | None = None  # the driver's own name for the device when it gives no PCI address


_PCI = re.compile(r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<device>[0-9a-fA-F]{2})(?:\.[0-7])?$")


def pci_key(bus_id: str) -> str | None:
    """`00000000:3B:00.0`, `0000:3b:00` and `3b:00.0` all → `0000:3b:00` (drivers log the address differently)."""
    match = _PCI.match(bus_id.strip())
    if match is None:
        return None
    domain = int(match["domain"] or "0", 16)
    return f"{domain:04x}:{int(match['bus'], 16):02x}:{int(match['device'], 16):02x}"


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    severity: str
    title: str
    action: str


_APPLICATION = "usually the application: restart it; count, and raise a finding only on a high rate"
_RESET = "take the device out of the campaign and reset it; RMA if it recurs"
_RMA = "take the device out of the campaign, reset it and open an RMA case"
_WATCH = "keep running and watch the rate; a finding if it repeats"

_NV_BUS = r"(?:PCI:)?(?P<bus>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})"
_NV_XID = re.compile(rf"NVRM: Xid \({_NV_BUS}[^)]*\): (?P<code>\d+)")
_NV_OFF_BUS = re.compile(rf"NVRM: GPU (?:at )?{_NV_BUS}(?:\.[0-7])?:? (?:GPU )?has fallen off the bus")
_NV_RULES = (
    _Rule(
        re.compile(rf"NVRM: GPU {_NV_BUS}\.[0-7]: RmInitAdapter failed"),
        "critical",
        "driver could not initialise the GPU",
        _RESET,
    ),
    _Rule(re.compile(r"NVRM: .*\[NV_ERR_RESET_REQUIRED\]"), "critical", "GPU needs a reset", _RESET),
    _Rule(
        re.compile(r"NVRM: (?P<where>GPU\d+) .*GSP RM heartbeat timed out"), "critical", "GSP heartbeat lost", _RESET
    ),
)


def _nvidia(text: str) -> Finding | None:
    if (match := _NV_XID.search(text)) is not None:
        code = int(match["code"])
    elif (match := _NV_OFF_BUS.search(text)) is not None:
        code = 79  # the line older drivers log instead of (or with) XID 79
    else:
        return _first_rule("NVIDIA", _NV_RULES, text)
    xid = classify(code)
    return Finding("NVIDIA", xid.severity, xid.title, xid.action, code=code, bus_id=pci_key(match["bus"]))


_AMD_BUS = re.compile(r"amdgpu (?P<bus>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]):")
_AMD_RULES = (
    _Rule(re.compile(r"uncorrectable hardware error"), "critical", "uncorrectable hardware (RAS) error", _RMA),
    _Rule(
        re.compile(r"GPU reset(?:\(\d+\))? failed|GPU [Rr]ecovery [Ff]ailed"), "critical", "GPU reset failed", _RESET
    ),
    _Rule(re.compile(r"ring (?P<where>\S+) timeout"), "warning", "GPU job timed out", _WATCH),
    _Rule(re.compile(r"GPU reset begin"), "warning", "driver reset the GPU", _WATCH),
    _Rule(re.compile(r"VRAM is lost due to GPU reset"), "warning", "device memory lost in a GPU reset", _WATCH),
)


def _amd(text: str) -> Finding | None:
    if "amdgpu" not in text:
        return None
    finding = _first_rule("AMD", _AMD_RULES, text)
    if finding is None or (bus := _AMD_BUS.search(text)) is None:
        return finding
    return replace(finding, bus_id=pci_key(bus["bus"]))


_ASCEND_DEVICE = re.compile(r"\bdev_?id=(?P<id>\d+)")
_ASCEND_RULES = (
    _Rule(re.compile(r"Device is abnormal"), "critical", "NPU not responding (device abnormal)", _RESET),
    _Rule(
        re.compile(r"Get mntn message\. \(exception_id=(?P<where>0x[0-9a-fA-F]+)"),
        "warning",
        "NPU firmware exception reported",
        _WATCH,
    ),
    _Rule(re.compile(r"\[devmm\].*Vm fault failed"), "info", "NPU memory page fault", _APPLICATION),
)


def _ascend(text: str) -> Finding | None:
    if "[ascend]" not in text:
        return None
    finding = _first_rule("Huawei Ascend", _ASCEND_RULES, text)
    if finding is None or finding.where is not None or (device := _ASCEND_DEVICE.search(text)) is None:
        return finding
    return replace(finding, where=f"dev_id {device['id']}")


# Cambricon's driver logs its own XIDs (cndrv enum xid_type) as `CNRM: Xid [Card0]: <code>, <text>`.
_CAMBRICON_XID = re.compile(r"CNRM: Xid \[(?P<card>[^\]]+)\]: (?P<code>\d+), (?P<text>.*)")
_CAMBRICON_CATALOGUE: dict[int, tuple[str, str, str]] = {
    1: ("info", "application fault reported by the driver", _APPLICATION),
    2: ("critical", "internal micro-controller error", _RESET),
    3: ("warning", "DDR/HBM ECC error", _WATCH),
    4: ("critical", "host-device communication (RPC) error", _RESET),
    5: ("info", "illegal memory or resource access", _APPLICATION),
    6: ("warning", "CRC error", _WATCH),
    7: ("critical", "MLU-Link error", _RESET),
    8: ("critical", "HBM/DDR error", _RMA),
    9: ("critical", "over-temperature", "take the device out of the campaign and check its cooling"),
    10: ("critical", "device halted earlier", _RESET),
}


def _cambricon(text: str) -> Finding | None:
    if (match := _CAMBRICON_XID.search(text)) is None:
        return None
    code = int(match["code"])
    severity, title, action = _CAMBRICON_CATALOGUE.get(code, ("warning", "unclassified Cambricon XID", _WATCH))
    if code == 3 and "TWO_BIT" in match["text"]:
        severity, title, action = "critical", "uncorrectable (two-bit) ECC error", _RMA
    return Finding("Cambricon", severity, title, action, code=code, where=match["card"])


# MetaX's kernel driver logs MODULE.B<DBDF as 32-bit hex>.SUBMODULE.LEVEL (MetaX EID message guide).
_METAX = re.compile(
    r"\b(?:METAX|MXCD|MXGVM)\.B(?P<dbdf>[0-9A-Fa-f]{1,8})\.(?P<unit>\w+)\.(?P<level>EMERG|ALERT|CRIT|ERROR)\b"
)


def _metax(text: str) -> Finding | None:
    if (match := _METAX.search(text)) is None:
        return None
    dbdf = int(match["dbdf"], 16)
    bus_id = f"{dbdf >> 16:04x}:{(dbdf >> 8) & 0xFF:02x}:{(dbdf >> 3) & 0x1F:02x}"
    severity = "warning" if match["level"] == "ERROR" else "critical"
    action = _WATCH if severity == "warning" else _RESET
    return Finding("MetaX", severity, f"{match['unit']} error", action, bus_id=bus_id)


def _first_rule(vendor: str, rules: Iterable[_Rule], text: str) -> Finding | None:
    for rule in rules:
        if (match := rule.pattern.search(text)) is not None:
            groups = match.groupdict()
            bus = groups.get("bus")
            return Finding(
                vendor,
                rule.severity,
                rule.title,
                rule.action,
                bus_id=pci_key(bus) if bus else None,
                where=groups.get("where"),
            )
    return None


_PARSERS: tuple[Callable[[str], Finding | None], ...] = (_nvidia, _amd, _ascend, _cambricon, _metax)


def parse_kernel_line(text: str) -> Finding | None:
    """What an accelerator driver's kernel-log line reports, or None for any other line."""
    for parser in _PARSERS:
        if (finding := parser(text)) is not None:
            return finding
    return None


def kernel_log_events(
    lines: Iterable[KernelLine], device_by_bus: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Events in the controller's shape for the lines that report a driver error, raw lines kept.

    `device_by_bus` maps PCI bus ids (any common spelling) to device names; a line about an unmapped device
    gets device None and its address in the message. Drivers often spread one error over several lines
    (NVIDIA's XID 13, XID 79 and its "fallen off the bus" line, MetaX's EID lines): consecutive lines saying
    the same thing within FOLD_WINDOW_S become one event holding all of them.
    """
    names = {key: name for bus, name in (device_by_bus or {}).items() if (key := pci_key(bus)) is not None}
    events: list[dict[str, Any]] = []
    previous: tuple[Finding, float] | None = None
    for line in lines:
        finding = parse_kernel_line(line.text)
        if finding is None:
            continue
        if previous is not None and previous[0] == finding and line.time_s - previous[1] <= FOLD_WINDOW_S:
            events[-1]["raw"] = f"{events[-1]['raw']}\n{line.text}"[:MAX_RAW_CHARS]
            continue
        previous = (finding, line.time_s)
        what = f"XID {finding.code} ({finding.title})" if finding.code is not None else finding.title
        place = f" at PCI {finding.bus_id}" if finding.bus_id else f" on {finding.where}" if finding.where else ""
        events.append(
            {
                "time_s": line.time_s,
                "device": names.get(finding.bus_id) if finding.bus_id else None,
                "kind": "driver_error",
                "severity": finding.severity,
                # Only NVIDIA codes go in `code`: other vendors' numbers mean other things (Cambricon's 3 is ECC).
                "code": finding.code if finding.vendor == "NVIDIA" else None,
                "message": f"{finding.vendor} {what}{place}: {finding.action}",
                "raw": line.text[:MAX_RAW_CHARS],
            }
        )
    return events


class _Source(Protocol):
    def open(self) -> bool: ...
    def read(self) -> list[KernelLine]: ...
    def close(self) -> None: ...


class _Kmsg:
    """/dev/kmsg without blocking: one `priority,sequence,microseconds,flags;text` record per line."""

    def __init__(self, path: Path, *, from_boot: bool) -> None:
        self._path = path
        self._from_boot = from_boot
        self._fd: int | None = None
        self._pending = b""
        self._boot_s = 0.0

    def open(self) -> bool:
        try:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
            if not self._from_boot:
                os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as error:
            log.debug("kernel log: cannot read %s: %s", self._path, error)
            self.close()
            return False
        # Record times are microseconds on the monotonic clock since boot.
        self._boot_s = time.time() - time.monotonic()
        return True

    def read(self) -> list[KernelLine]:
        while self._fd is not None:
            try:
                chunk = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue  # the ring buffer overwrote records we had not read; carry on with the next one
            except OSError as error:
                log.warning("kernel log: reading %s failed (%s); no more kernel-log events", self._path, error)
                self.close()
                break
            if not chunk:
                break
            self._pending += chunk
        *records, self._pending = self._pending.split(b"\n")
        lines: list[KernelLine] = []
        for record in records:
            header, separator, text = record.decode(errors="replace").partition(";")
            fields = header.split(",")
            if not separator or len(fields) < 3 or not fields[2].isdigit():
                continue  # a continuation line (" KEY=value") or not a record
            lines.append(KernelLine(self._boot_s + int(fields[2]) / 1e6, text))
        return lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_DMESG_LINE = re.compile(r"^\[\s*(?P<seconds>\d+\.\d+)\]\s?(?P<text>.*)$")


class _Dmesg:
    """`dmesg` output, keeping only lines newer than the last read."""

    def __init__(self, command: Sequence[str], *, from_boot: bool) -> None:
        self._command = list(command)
        self._from_boot = from_boot
        self._last_s = -1.0
        self._seen_at_last: set[str] = set()
        self._boot_s = 0.0

    def open(self) -> bool:
        self._boot_s = time.time() - time.monotonic()
        if self._from_boot:
            return self._run() is not None
        lines = self._run()
        if lines is None:
            return False
        self._advance(lines)
        return True

    def read(self) -> list[KernelLine]:
        lines = self._run() or []
        fresh = [
            (seconds, text)
            for seconds, text in lines
            if seconds > self._last_s or (seconds == self._last_s and text not in self._seen_at_last)
        ]
        self._advance(lines)
        return [KernelLine(self._boot_s + seconds, text) for seconds, text in fresh]

    def _advance(self, lines: list[tuple[float, str]]) -> None:
        if lines:
            last_s = max(seconds for seconds, _ in lines)
            seen = {text for seconds, text in lines if seconds == last_s}
            self._seen_at_last = seen | (self._seen_at_last if last_s == self._last_s else set())
            self._last_s = max(self._last_s, last_s)

    def _run(self) -> list[tuple[float, str]] | None:
        try:
            result = subprocess.run(
                self._command, capture_output=True, text=True, errors="replace", timeout=DMESG_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            log.debug("kernel log: %s failed: %s", self._command[0], error)
            return None
        if result.returncode != 0:
            log.debug("kernel log: %s exited %d: %s", self._command[0], result.returncode, result.stderr.strip())
            return None
        lines: list[tuple[float, str]] = []
        for line in result.stdout.splitlines():
            if (match := _DMESG_LINE.match(line)) is not None:
                lines.append((float(match["seconds"]), match["text"]))
        return lines

    def close(self) -> None:
        """Nothing to release."""


class KernelLogCollector:
    """Driver errors from the kernel log, as events; PCI addresses mapped to device names where known."""

    name: ClassVar[str] = "kernel_log"

    def __init__(
        self,
        settings: AgentSettings,
        *,
        device_by_bus: Mapping[str, str] | None = None,
        kmsg_path: Path = Path("/dev/kmsg"),
        dmesg_command: Sequence[str] = ("dmesg",),
        from_boot: bool = False,
    ) -> None:
        """`device_by_bus` maps PCI bus ids to device names (by default the agent's registered devices);
        `from_boot` also reports messages logged before start."""
        self._settings = settings
        self._device_by_bus = device_by_bus
        self._candidates: list[_Source] = [
            _Kmsg(kmsg_path, from_boot=from_boot),
            _Dmesg(dmesg_command, from_boot=from_boot),
        ]
        self._source: _Source | None = None
        self._chosen = False

    def devices(self) -> list[DeviceIn]:
        return []

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        collected = Collected()
        source = self._open()
        if source is not None:
            device_by_bus = self._device_by_bus if self._device_by_bus is not None else context.device_by_bus
            collected.events.extend(kernel_log_events(source.read(), device_by_bus))
        return collected

    def close(self) -> None:
        """Release the kernel log."""
        if self._source is not None:
            self._source.close()

    def _open(self) -> _Source | None:
        if not self._chosen:
            self._chosen = True
            self._source = next((source for source in self._candidates if source.open()), None)
            if self._source is None:
                log.info("kernel log: neither /dev/kmsg nor dmesg is readable here; no kernel-log events")
        return self._source

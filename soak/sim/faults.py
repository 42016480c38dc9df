"""Effects of a plan's injected faults on one simulated accelerator."""

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from soak.plan import (
    DriverErrorFault,
    Fault,
    HangFault,
    MemoryLeakFault,
    SilentDataCorruptionFault,
    ThermalRunawayFault,
    ThroughputDecayFault,
)

logger = logging.getLogger(__name__)

BYTES_PER_MIB = 1 << 20
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_MINUTE = 60.0
# Decay stops here so a badly decayed device still reports some throughput rather than looking hung.
MIN_THROUGHPUT_FACTOR = 0.05

XID_MESSAGES: dict[int, str] = {
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    48: "Double Bit ECC Error",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
    119: "Timeout waiting for RPC from GSP!",
}


@dataclass(frozen=True)
class DriverEvent:
    """One driver error as the kernel log reports it."""

    time_s: float
    """Epoch seconds."""
    code: int
    """NVIDIA XID code."""
    raw: str
    """Kernel-log line, e.g. "NVRM: Xid (PCI:0000:3b:00): 79, pid=4242, GPU has fallen off the bus."."""


def xid_message(code: int) -> str:
    """The driver's description of an XID code, or "Unknown error" for codes the simulator does not know."""
    return XID_MESSAGES.get(code, "Unknown error")


def xid_log_line(*, pci_bus_id: str, code: int) -> str:
    """A kernel-log line for an XID, in the form recent NVIDIA drivers write for errors without an owner."""
    return f"NVRM: Xid (PCI:{pci_bus_id}): {code}, pid='<unknown>', name=<unknown>, {xid_message(code)}"


def stable_name_hash(name: str) -> int:
    """A 64-bit hash of a device name that, unlike hash(), is the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


class PoissonArrivals:
    """Arrival times of a Poisson process fixed by its seed alone.

    The times do not depend on how often the device is advanced, so a restarted worker that seeds the same way
    replays exactly the arrivals its predecessor saw and can skip them by time.
    """

    _CHUNK = 256

    def __init__(self, *, rate_per_hour: float, first_s: float, rng: np.random.Generator) -> None:
        self._mean_gap_s = SECONDS_PER_HOUR / rate_per_hour
        self._rng = rng
        self._pending_s: list[float] = []
        self._last_s = first_s

    def take_until(self, end_s: float) -> list[float]:
        """Remove and return every arrival up to and including end_s, oldest first."""
        taken: list[float] = []
        while True:
            if not self._pending_s:
                # Drawing in chunks keeps a high rate (thousands an hour over weeks) cheap to skip through.
                gaps_s = self._rng.exponential(self._mean_gap_s, size=self._CHUNK)
                self._pending_s = (self._last_s + np.cumsum(gaps_s)).tolist()[::-1]
                self._last_s = self._pending_s[0]
            if self._pending_s[-1] > end_s:
                return taken
            taken.append(self._pending_s.pop())


class DeviceFaults:
    """The faults of a plan that apply to one device, evaluated at any time of one worker process.

    Leaks belong to the process: a restarted worker starts with none. Decay and overheating belong to the
    hardware and continue across restarts. A hang fires once: a process started after its onset never hangs.
    Driver errors and SDC arrive as seeded Poisson processes whose times are the same in every process.
    """

    def __init__(
        self,
        faults: Sequence[Fault],
        *,
        device_name: str,
        campaign_start_s: float,
        process_start_s: float,
        seed: int,
    ) -> None:
        self._process_start_s = process_start_s
        self._pci_bus_id = _pci_bus_id(device_name)
        self._device_leaks: list[tuple[float, float]] = []
        self._host_leaks: list[tuple[float, float]] = []
        self._decays: list[tuple[float, float]] = []
        self._runaways: list[tuple[float, float]] = []
        self._driver_errors: list[tuple[int, PoissonArrivals]] = []
        self._sdc: list[PoissonArrivals] = []
        self._hang_onsets_s: list[float] = []
        name_hash = stable_name_hash(device_name)
        mine = [fault for fault in faults if fault.device == device_name]
        for position, fault in enumerate(mine, start=1):
            onset_s = campaign_start_s + fault.start.total_seconds()
            match fault:
                case MemoryLeakFault(target="device"):
                    self._device_leaks.append((onset_s, fault.rate_mib_per_hour))
                case MemoryLeakFault():
                    self._host_leaks.append((onset_s, fault.rate_mib_per_hour))
                case ThroughputDecayFault():
                    self._decays.append((onset_s, fault.rate_percent_per_hour))
                case ThermalRunawayFault():
                    self._runaways.append((onset_s, fault.rate_c_per_minute))
                case DriverErrorFault():
                    stream = self._arrivals(fault.rate_per_hour, onset_s, seed, name_hash, position)
                    self._driver_errors.append((fault.xid, stream))
                case SilentDataCorruptionFault():
                    self._sdc.append(self._arrivals(fault.rate_per_hour, onset_s, seed, name_hash, position))
                case HangFault():
                    if onset_s >= process_start_s:
                        self._hang_onsets_s.append(onset_s)
                    else:
                        logger.info("%s: hang at %.0f s fired before this process started", device_name, onset_s)
        self.first_hang_s = min(self._hang_onsets_s, default=None)
        """When this process's device hangs, or None if it never does."""

    def _arrivals(
        self, rate_per_hour: float, onset_s: float, seed: int, name_hash: int, position: int
    ) -> PoissonArrivals:
        rng = np.random.default_rng(np.random.SeedSequence([seed, name_hash, position]))
        stream = PoissonArrivals(rate_per_hour=rate_per_hour, first_s=onset_s, rng=rng)
        # An earlier process of this worker already delivered these.
        stream.take_until(self._process_start_s)
        return stream

    def device_leak_bytes(self, time_s: float) -> int:
        """Device memory this process has leaked by time_s."""
        return self._leaked_bytes(self._device_leaks, time_s)

    def host_leak_bytes(self, time_s: float) -> int:
        """Host memory this process should hold leaked by time_s."""
        return self._leaked_bytes(self._host_leaks, time_s)

    def _leaked_bytes(self, leaks: list[tuple[float, float]], time_s: float) -> int:
        leaked_mib = 0.0
        for onset_s, rate_mib_per_hour in leaks:
            since_s = max(0.0, time_s - max(onset_s, self._process_start_s))
            leaked_mib += rate_mib_per_hour * since_s / SECONDS_PER_HOUR
        return int(leaked_mib * BYTES_PER_MIB)

    def throughput_factor(self, time_s: float) -> float:
        """Fraction of healthy throughput left after decay at time_s."""
        factor = 1.0
        for onset_s, rate_percent_per_hour in self._decays:
            hours = max(0.0, time_s - onset_s) / SECONDS_PER_HOUR
            factor *= max(MIN_THROUGHPUT_FACTOR, 1.0 - rate_percent_per_hour / 100.0 * hours)
        return max(MIN_THROUGHPUT_FACTOR, factor)

    def extra_heating_c(self, time_s: float) -> float:
        """Degrees the failing cooling adds to the device's equilibrium temperature at time_s."""
        return sum(
            rate_c_per_minute * max(0.0, time_s - onset_s) / SECONDS_PER_MINUTE
            for onset_s, rate_c_per_minute in self._runaways
        )

    def is_hung(self, time_s: float) -> bool:
        """Whether the device has stopped making progress by time_s."""
        return self.first_hang_s is not None and time_s >= self.first_hang_s

    def take_driver_events(self, end_s: float) -> list[DriverEvent]:
        """Driver errors after the previous call and up to end_s, oldest first."""
        events = [
            DriverEvent(time_s=time_s, code=code, raw=xid_log_line(pci_bus_id=self._pci_bus_id, code=code))
            for code, stream in self._driver_errors
            for time_s in stream.take_until(end_s)
        ]
        return sorted(events, key=lambda event: event.time_s)

    def take_sdc_events(self, end_s: float) -> int:
        """Number of silent data corruptions after the previous call and up to end_s."""
        return sum(len(stream.take_until(end_s)) for stream in self._sdc)


def _pci_bus_id(device_name: str) -> str:
    # One bus per simulated device, as on a real 8-GPU board, so log lines tell devices apart.
    digits = "".join(char for char in device_name if char.isdigit())
    bus = (0x10 + int(digits or "0")) % 256
    return f"0000:{bus:02x}:00"

"""What each injected fault does to a device, as soak would observe it, and which findings count as catching it.

A fault acts twice: first on when the device reports (a lost node, a dead or hung worker) and on its events,
before the healthy values are drawn for the stretches that remain; then on the values themselves (a leak's
growth, a thermal climb, a throughput loss). Both steps read only the planned fault and the device's own
random generator, so every device of a node sees its node's fault the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from soak.analysis.sim import taxonomy as t
from soak.analysis.sim.draft import THROUGHPUT_SERIES, DeviceDraft
from soak.analysis.sim.healthy import CONTEXT_BYTES, GIB, MAX_SM_CLOCK_MHZ, MB, SLOWDOWN_C
from soak.analysis.sim.processes import FloatArray, poisson_increments
from soak.analysis.sim.schedule import PlannedFault
from soak.analysis.sim.truth import FaultTruth

THROUGHPUT = f"throughput.{THROUGHPUT_SERIES}"
THROUGHPUT_KINDS = frozenset({"throughput_drift", "slow_peer"})
# A worker that stops for a while also slows its average and may trip the liveness checks on the way.
OUTAGE_SIDE_EFFECTS = THROUGHPUT_KINDS | {"worker_hang", "crash_loop", "sustained_tax"}
# How long the runner notices a hang (soak's hang_timeout_s plus its polling) and how long a restart takes.
HANG_NOTICED_S = 35.0
THERMAL_MHZ_PER_C = 50.0
THERMAL_THROUGHPUT_PER_CLOCK = 0.5
HW_THERMAL_EXCESS_C = 8.0
SW_THERMAL_SLOWDOWN = 0x20
HW_THERMAL_SLOWDOWN = 0x40


def restart_s(rng: np.random.Generator) -> float:
    """Seconds from a worker's end to its replacement's first heartbeat (backoff, torch import, device open)."""
    return float(rng.uniform(20.0, 90.0))


class FaultEffect:
    """One planned fault on one device: its effect on liveness and events, then on values, then its truth."""

    def __init__(self, fault: PlannedFault, draft: DeviceDraft, rng: np.random.Generator) -> None:
        self.fault, self.draft, self.rng = fault, draft, rng
        self.expected: dict[str, float] = {}
        self.side_effects: frozenset[str] = frozenset()
        self.description = ""
        self.uncorrectable_s = math.inf  # when an HBM3 fault's uncorrectable error comes
        self.error_times_s: list[float] = []  # an SRAM fault's errors

    def shape(self) -> None:
        """Change when the device reports and record its events."""
        step = _SHAPES.get(self.fault.fault_class)
        if step is not None:
            step(self)

    def alter(self) -> None:
        """Change the healthy values the device reports."""
        step = _ALTERS.get(self.fault.fault_class)
        if step is not None:
            step(self)

    def truth(self) -> FaultTruth:
        """The fault as the benchmark scores it."""
        end_s = self.draft.end_s
        return FaultTruth(
            fault_id=self.fault.fault_id,
            fault_class=self.fault.fault_class,
            variant=self.fault.variant,
            node=self.fault.node,
            devices=self.fault.devices,
            onset_s=self.fault.onset_s,
            expected={kind: onset_s for kind, onset_s in self.expected.items() if onset_s < end_s},
            side_effects=self.side_effects,
            params=self.fault.params,
            description=self.description,
        )

    # --- helpers ---------------------------------------------------------------------------------------------

    @property
    def onset_s(self) -> float:
        return self.fault.onset_s

    def _param(self, name: str) -> float:
        return float(self.fault.params[name])

    def _after(self, time_s: float) -> slice:
        return slice(self.draft.index(time_s), self.draft.n)

    def _reset_gpu(self, time_s: float, down_s: float) -> None:
        """The worker dies with the fault; the GPU is reset and a new worker starts after down_s."""
        self.draft.worker_died(time_s + 2.0, restart_after_s=down_s, reason="CUDA error: an illegal memory access")
        self.draft.gpu_resets_s.append(time_s + down_s - 30.0)

    def _crash_loop(self, time_s: float, reason: str) -> None:
        """Restarts fail one after another until the runner gives up on the device's worker (soak's rule)."""
        self.draft.worker_died(time_s, restart_after_s=None, reason=reason)
        died_s = time_s
        for attempt in range(5):
            died_s += 2.0**attempt + self.rng.uniform(15.0, 40.0)
            self.draft.event(died_s, "worker_died", "warning", f"worker of {self.draft.device} died: {reason}")
        self.draft.event(
            died_s,
            "worker_crash_loop",
            "critical",
            f"{self.draft.device} failed 6 times in 10 min; no more restarts, the campaign goes on without it",
        )

    def _add_uncorrectable(self, time_s: float) -> None:
        index = self.draft.index(time_s)
        if index >= self.draft.n:
            return
        for metric in ("device.ecc_uncorrected_volatile_errors", "device.ecc_uncorrected_aggregate_errors"):
            self.draft.increments.setdefault(metric, np.zeros(self.draft.n))[index] += 1.0

    # --- interruptions (Llama 3's causes) ---------------------------------------------------------------------

    def _shape_faulty_gpu(self) -> None:
        code = int(self.fault.params["xid"])
        self.draft.xid(self.onset_s, code)
        self.expected = {"driver_error": self.onset_s}
        self.side_effects = OUTAGE_SIDE_EFFECTS
        if self.fault.variant == "fell_off_bus":
            self.draft.stop(self.onset_s, self.draft.end_s, what="node")
            self._crash_loop(self.onset_s + 3.0, "CUDA error: unknown error (GPU has fallen off the bus)")
            self.side_effects = OUTAGE_SIDE_EFFECTS | {"node_lost"}
            self.description = "GPU fell off the bus (XID 79); its telemetry stops and its worker cannot restart"
        else:
            self._reset_gpu(self.onset_s, self._param("reset_s"))
            self.description = f"faulty GPU (XID {code}); the worker dies and the GPU is reset"

    def _shape_hbm3_memory(self) -> None:
        self.side_effects = OUTAGE_SIDE_EFFECTS
        if self.fault.variant == "rising_correctable":
            self.expected["memory_health"] = self.onset_s
            self.uncorrectable_s = self.onset_s + self._param("uncorrectable_after_hours") * 3600.0
            self.description = (
                f"HBM3 correctable errors rise from {self._param('start_rate_per_hour'):.1f}/h, doubling every "
                f"{self._param('doubling_hours'):.0f} h, until an uncorrectable error"
            )
        else:
            self.uncorrectable_s = self.onset_s
            self.description = "HBM3 uncorrectable ECC error (XID 48) and a row remap"
        if self.uncorrectable_s >= self.draft.end_s - 600.0:
            return
        failed = bool(self.fault.params["remap_failed"])
        time_s = self.uncorrectable_s
        self.draft.event(
            time_s,
            "ecc_error",
            "critical",
            "double-bit (uncorrectable) ECC error: take the device out of the campaign and check remapped rows",
        )
        self.draft.xid(time_s, 48)
        self.draft.xid(time_s + 5.0, 64 if failed else 63)
        self._reset_gpu(time_s, self._param("reset_s"))
        self.expected.setdefault("memory_health", time_s)
        self.expected["driver_error"] = time_s
        if failed:
            self.description += " that fails (XID 64)"

    def _alter_hbm3_memory(self) -> None:
        if self.fault.variant == "rising_correctable":
            n, dt = self.draft.n, self.draft.sample_interval_s
            rising = self._after(self.onset_s)
            hours = (self.draft.time_s[rising] - self.onset_s) / 3600.0
            rate_per_hour = np.minimum(
                self._param("start_rate_per_hour") * 2.0 ** (hours / self._param("doubling_hours")), 600.0
            )
            extra = np.zeros(n)
            extra[rising] = poisson_increments(self.rng, rate_per_hour * dt / 3600.0, int(hours.size))
            for metric in ("device.ecc_corrected_volatile_errors", "device.ecc_corrected_aggregate_errors"):
                self.draft.increments[metric] += extra
        if self.uncorrectable_s >= self.draft.end_s - 600.0:
            return
        self._add_uncorrectable(self.uncorrectable_s)
        pending = self.draft.array("device.remapped_rows_pending")
        reset_s = self.uncorrectable_s + self._param("reset_s") - 30.0
        pending[self.draft.index(self.uncorrectable_s) : self.draft.index(reset_s)] = 1.0
        if self.fault.params["remap_failed"]:
            self.draft.array("device.remapped_rows_failure")[self._after(self.uncorrectable_s + 5.0)] = 1.0
        else:
            self.draft.array("device.remapped_rows_uncorrectable")[self._after(reset_s)] += 1.0

    def _shape_software_bug(self) -> None:
        variant, mean_between_s = self.fault.variant, self._param("mean_between_s")
        self.side_effects = OUTAGE_SIDE_EFFECTS
        if variant == "crash_loop":
            self._crash_loop(self.onset_s, "RuntimeError: NCCL communicator was aborted")
            self.expected = {"crash_loop": self.onset_s}
            self.description = "software bug: the worker crashes at every start until the runner gives up"
            return
        time_s = self.onset_s
        while time_s < self.draft.end_s:
            if variant == "intermittent_crash":
                self.draft.worker_died(time_s, restart_after_s=restart_s(self.rng), reason="Segmentation fault")
            else:
                noticed_s = time_s + HANG_NOTICED_S
                self.draft.stop(time_s, noticed_s, what="progress")
                self.draft.event(
                    noticed_s,
                    "worker_hang",
                    "warning",
                    f"worker of {self.draft.device} made no progress for {HANG_NOTICED_S:.0f} s",
                )
                self.draft.stop(noticed_s, noticed_s + restart_s(self.rng), what="worker")
            time_s += float(self.rng.exponential(mean_between_s))
        if variant == "intermittent_crash":
            self.expected = {"crash_loop": self.onset_s}
            self.description = f"software bug: the worker crashes about every {mean_between_s / 60:.0f} min"
        else:
            self.expected = {"worker_hang": self.onset_s}
            self.description = f"software bug: the worker hangs about every {mean_between_s / 3600:.1f} h"

    def _shape_network(self) -> None:
        self._lose_node(reboot=False)
        self.description = (
            f"network: node {self.fault.node} unreachable for {self._param('gap_s') / 60:.0f} min"
            if self.fault.params["returns"]
            else f"network: node {self.fault.node} unreachable for the rest of the campaign"
        )

    def _shape_host_maintenance(self) -> None:
        self._lose_node(reboot=True)
        self.description = (
            f"host maintenance: node {self.fault.node} rebooted, away {self._param('gap_s') / 60:.0f} min"
        )

    def _lose_node(self, *, reboot: bool) -> None:
        returns = bool(self.fault.params["returns"])
        back_s = self.onset_s + self._param("gap_s") if returns else self.draft.end_s
        self.draft.stop(self.onset_s, back_s, what="node")
        # The controller declares the node lost after a minute of silence (a node event, for all its devices).
        self.draft.event(
            self.onset_s + 60.0, "node_lost", "critical", f"{self.draft.node} stopped reporting", whole_node=True
        )
        if returns and back_s < self.draft.end_s:
            self.draft.event(back_s, "node_returned", "info", f"{self.draft.node} reports again", whole_node=True)
            self.draft.stop(back_s, back_s + restart_s(self.rng), what="worker")
            if reboot:
                self.draft.gpu_resets_s.append(back_s)
        self.expected = {"node_lost": self.onset_s}
        self.side_effects = OUTAGE_SIDE_EFFECTS

    def _shape_gpu_sram(self) -> None:
        self.side_effects = OUTAGE_SIDE_EFFECTS
        self.expected = {"driver_error": self.onset_s, "memory_health": self.onset_s}
        if self.fault.variant == "uncontained":
            self.error_times_s = [self.onset_s]
            self.draft.xid(self.onset_s, 95)
            self._reset_gpu(self.onset_s, self._param("reset_s"))
            self.description = "GPU SRAM uncontained error (XID 95); the GPU is reset"
            return
        time_s, self.error_times_s = self.onset_s, []
        for _ in range(int(self.fault.params["repeats"])):
            if time_s >= self.draft.end_s:
                break
            self.error_times_s.append(time_s)
            self.draft.xid(time_s, 94)
            self.draft.worker_died(time_s + 1.0, restart_after_s=restart_s(self.rng), reason="uncorrectable ECC error")
            time_s += float(self.rng.exponential(self._param("mean_between_s")))
        self.description = f"GPU SRAM contained errors (XID 94) x{len(self.error_times_s)}"

    def _alter_gpu_sram(self) -> None:
        for time_s in self.error_times_s:
            self._add_uncorrectable(time_s)

    def _shape_gsp(self) -> None:
        code = int(self.fault.params["xid"])
        self.draft.xid(self.onset_s, code)
        noticed_s = self.onset_s + HANG_NOTICED_S
        self.draft.stop(self.onset_s, noticed_s, what="progress")
        self.draft.event(
            noticed_s, "worker_hang", "warning", f"worker of {self.draft.device} made no progress for 35 s"
        )
        reset_s = self._param("reset_s")
        self.draft.stop(noticed_s, self.onset_s + reset_s, what="worker")
        self.draft.gpu_resets_s.append(self.onset_s + reset_s - 30.0)
        self.expected = {"driver_error": self.onset_s}
        self.side_effects = OUTAGE_SIDE_EFFECTS
        self.description = f"GSP firmware stopped answering (XID {code}); the GPU is reset after {reset_s / 60:.0f} min"

    def _shape_sdc(self) -> None:
        time_s, count = self.onset_s, 0
        while time_s < self.draft.end_s:
            if self.draft.progress[min(self.draft.index(time_s), self.draft.n - 1)]:
                count += 1
                self.draft.event(
                    time_s,
                    "sdc",
                    "critical",
                    f"{THROUGHPUT_SERIES}: step checksum differs from the reference replica "
                    f"(relative error {self.rng.uniform(1e-4, 1e-1):.1e})",
                )
            time_s += float(self.rng.exponential(self._param("mean_between_s")))
        self.expected = {"silent_data_corruption": self.onset_s}
        self.description = f"silent data corruption: {count} wrong result(s) without any error"

    def _alter_thermal_interface(self) -> None:
        draft, working = self.draft, self.draft.progress
        temperature = draft.array("device.temperature_c")
        before = temperature[: draft.index(self.onset_s)][working[: draft.index(self.onset_s)]]
        climb_c = SLOWDOWN_C + self._param("excess_c") - float(np.median(before))
        share = np.clip((draft.time_s - self.onset_s) / (self._param("climb_hours") * 3600.0), 0.0, 1.0)
        unthrottled = temperature + climb_c * share
        excess_c = np.maximum(unthrottled - SLOWDOWN_C, 0.0)
        throttled = working & (excess_c > 0)
        temperature[:] = np.where(
            throttled, SLOWDOWN_C + 0.25 * excess_c + self.rng.normal(0.0, 0.3, draft.n), unthrottled
        )
        clock = draft.array("device.sm_clock_mhz")
        capped = np.minimum(clock, MAX_SM_CLOCK_MHZ - THERMAL_MHZ_PER_C * excess_c)
        lost = np.where(throttled, (clock - capped) / MAX_SM_CLOCK_MHZ, 0.0)
        clock[:] = np.where(throttled, capped, clock)
        draft.array(THROUGHPUT)[:] *= 1.0 - THERMAL_THROUGHPUT_PER_CLOCK * lost
        draft.array("device.power_w")[:] *= 1.0 - 0.4 * lost
        reasons = draft.array("device.clock_event_reasons")
        bits = throttled * SW_THERMAL_SLOWDOWN + (throttled & (excess_c > HW_THERMAL_EXCESS_C)) * HW_THERMAL_SLOWDOWN
        reasons[:] = reasons.astype(np.int64) | bits.astype(np.int64)
        self.expected = {"thermal_margin": self.onset_s}
        if throttled.any():
            first_s = float(draft.time_s[np.argmax(throttled)])
            self.expected.update({"throttling": first_s, "throughput_drift": first_s, "slow_peer": first_s})
        self.side_effects = frozenset({"sustained_tax"})
        self.description = (
            f"thermal interface degrades: temperature climbs {climb_c:.0f} C over "
            f"{self._param('climb_hours'):.0f} h to thermal slowdown, costing up to "
            f"{100 * THERMAL_THROUGHPUT_PER_CLOCK * float(lost.max()):.0f} % throughput"
        )

    # --- slow degradations ----------------------------------------------------------------------------------

    def _since_process_start(self) -> FloatArray:
        """Seconds since max(onset, the current worker process's start) for every sample (0 before onset)."""
        starts_s = np.concatenate([[self.onset_s], self.draft.process_starts_s()])
        starts_s = np.sort(starts_s[starts_s >= self.onset_s])
        which = np.searchsorted(starts_s, self.draft.time_s, side="right") - 1
        elapsed: FloatArray = np.where(which >= 0, self.draft.time_s - starts_s[np.maximum(which, 0)], 0.0)
        return elapsed

    def _shape_device_memory_leak(self) -> None:
        rate = self._param("rate_percent_per_hour") / 100.0 * self.draft.memory_total_bytes / 3600.0
        headroom = self.draft.memory_total_bytes * (1.0 - self.draft.allocated_share) - self.draft.reserved_slack_bytes
        headroom -= CONTEXT_BYTES
        # Each worker leaks until the allocator runs out of device memory; its replacement starts clean.
        time_s = self.onset_s + headroom / rate
        while time_s < self.draft.end_s:
            self.draft.worker_died(time_s, restart_after_s=restart_s(self.rng), reason="torch.OutOfMemoryError")
            time_s += headroom / rate + 90.0
        self.expected = {"memory_leak": self.onset_s}
        self.side_effects = frozenset({"allocator_growth", "crash_loop", "worker_hang"}) | THROUGHPUT_KINDS
        self.description = (
            f"device memory leak of {self._param('rate_percent_per_hour'):.2f} %/h of capacity "
            f"({rate * 3600 / MB:.0f} MB/h); the worker runs out of memory after {headroom / rate / 3600:.1f} h"
        )

    def _alter_device_memory_leak(self) -> None:
        rate = self._param("rate_percent_per_hour") / 100.0 * self.draft.memory_total_bytes / 3600.0
        leaked = rate * self._since_process_start()
        allocated = self.draft.array("worker.memory_allocated_bytes")
        allocated += leaked
        reserved = self.draft.array("worker.memory_reserved_bytes")
        block = 2.0 * 2**20
        reserved[:] = np.maximum(reserved, np.ceil((allocated + 0.3 * GIB) / block) * block)
        reserved[:] = np.minimum(reserved, self.draft.memory_total_bytes - CONTEXT_BYTES)
        used = self.draft.array("device.memory_used_bytes")
        used[:] = np.where(self.draft.alive, reserved + CONTEXT_BYTES, used)

    def _alter_rss_leak(self) -> None:
        rate = self._param("rate_mb_per_hour") * MB / 3600.0
        self.draft.array("process.rss_bytes")[:] += rate * self._since_process_start()
        self.expected = {"memory_leak": self.onset_s}
        self.side_effects = frozenset({"allocator_growth"})
        self.description = f"host RSS leak of {self._param('rate_mb_per_hour'):.0f} MB/h in the worker process"

    def _alter_open_files_leak(self) -> None:
        per_s = self._param("rate_per_hour") / 3600.0
        self.draft.array("process.open_files")[:] += np.floor(per_s * self._since_process_start())
        self.expected = {"memory_leak": self.onset_s}
        self.description = f"file descriptor leak of {self._param('rate_per_hour'):.0f} open files/h"

    def _alter_throughput_step(self) -> None:
        drop = self._param("drop")
        self.draft.array(THROUGHPUT)[self._after(self.onset_s)] *= 1.0 - drop
        self.expected = dict.fromkeys(THROUGHPUT_KINDS, self.onset_s)
        self.side_effects = frozenset({"sustained_tax"})
        self.description = f"throughput drops {100 * drop:.1f} % at once and stays down"

    def _alter_throughput_decay(self) -> None:
        drop, ramp_hours = self._param("drop"), self._param("ramp_hours")
        share = np.clip((self.draft.time_s - self.onset_s) / (ramp_hours * 3600.0), 0.0, 1.0)
        self.draft.array(THROUGHPUT)[:] *= 1.0 - drop * share
        self.expected = dict.fromkeys(THROUGHPUT_KINDS, self.onset_s)
        self.side_effects = frozenset({"sustained_tax"})
        self.description = f"throughput decays {100 * drop:.1f} % over {ramp_hours:.0f} h and stays down"

    def _shape_stack_change(self) -> None:
        params = self.fault.params
        self.draft.stack_change(self.onset_s, str(params["component"]), str(params["old"]), str(params["new"]))
        drop = self._param("drop")
        if drop > 0:
            self.expected = dict.fromkeys(THROUGHPUT_KINDS | {"stack_regression"}, self.onset_s)
            self.description = (
                f"{params['component']} {params['old']} -> {params['new']} costs {100 * drop:.1f} % throughput"
            )
        else:
            self.description = f"{params['component']} {params['old']} -> {params['new']}, no effect"
        self.side_effects = frozenset({"sustained_tax"})

    def _alter_stack_change(self) -> None:
        self.draft.array(THROUGHPUT)[self._after(self.onset_s)] *= 1.0 - self._param("drop")

    def _shape_pcie_degraded(self) -> None:
        narrow = self.fault.variant == "width_x8"
        link = "x16 -> x8" if narrow else "Gen5 -> Gen4"
        self.draft.event(self.onset_s, "pcie_link_degraded", "warning", f"PCIe link degraded: {link}")
        self.expected = {"pcie_health": self.onset_s}
        self.side_effects = THROUGHPUT_KINDS | {"driver_error", "memory_health"}
        self.description = f"PCIe link degraded ({link}) with {self._param('replays_per_hour'):.0f} replays/h"

    def _alter_pcie_degraded(self) -> None:
        after = self._after(self.onset_s)
        if self.fault.variant == "width_x8":
            self.draft.array("device.pcie_link_width")[after] = 8.0
        else:
            self.draft.array("device.pcie_link_gen")[after] = 4.0
        per_sample = self._param("replays_per_hour") * self.draft.sample_interval_s / 3600.0
        replays = self.draft.increments["device.pcie_replays"]
        replays[after] += poisson_increments(self.rng, per_sample, replays[after].size)
        self.draft.array(THROUGHPUT)[after] *= 0.985


# Each fault class's steps; a class without a step there leaves that part of the device alone.
_SHAPES: dict[str, Callable[[FaultEffect], None]] = {
    t.FAULTY_GPU: FaultEffect._shape_faulty_gpu,
    t.HBM3_MEMORY: FaultEffect._shape_hbm3_memory,
    t.SOFTWARE_BUG: FaultEffect._shape_software_bug,
    t.NETWORK: FaultEffect._shape_network,
    t.HOST_MAINTENANCE: FaultEffect._shape_host_maintenance,
    t.GPU_SRAM: FaultEffect._shape_gpu_sram,
    t.GSP: FaultEffect._shape_gsp,
    t.SDC: FaultEffect._shape_sdc,
    t.DEVICE_MEMORY_LEAK: FaultEffect._shape_device_memory_leak,
    t.STACK_CHANGE: FaultEffect._shape_stack_change,
    t.PCIE_DEGRADED: FaultEffect._shape_pcie_degraded,
}
_ALTERS: dict[str, Callable[[FaultEffect], None]] = {
    t.HBM3_MEMORY: FaultEffect._alter_hbm3_memory,
    t.GPU_SRAM: FaultEffect._alter_gpu_sram,
    t.THERMAL_INTERFACE: FaultEffect._alter_thermal_interface,
    t.DEVICE_MEMORY_LEAK: FaultEffect._alter_device_memory_leak,
    t.RSS_LEAK: FaultEffect._alter_rss_leak,
    t.OPEN_FILES_LEAK: FaultEffect._alter_open_files_leak,
    t.THROUGHPUT_STEP: FaultEffect._alter_throughput_step,
    t.THROUGHPUT_DECAY: FaultEffect._alter_throughput_decay,
    t.STACK_CHANGE: FaultEffect._alter_stack_change,
    t.PCIE_DEGRADED: FaultEffect._alter_pcie_degraded,
}

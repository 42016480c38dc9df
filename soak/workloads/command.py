"""Your own program as a workload: a command in its own process group that prints progress lines (JSON) on stdout."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import IO, TYPE_CHECKING, Annotated, Any, ClassVar

import psutil
from pydantic import Field, field_validator

from soak.sim.profile import SimProfile
from soak.workloads.base import IntervalResult, Workload, WorkloadParams
from soak.workloads.entry_point import USER_WORKLOAD_SIM_PROFILE
from soak.workloads.families import DeviceTimer

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# How often the interval loop looks for new lines; the reader threads stamp each line when it arrives, so this
# only delays counting, never changes it.
POLL_S = 0.05
OUTPUT_TAIL_LINES = 200
# Longer lines are split; a progress line is far shorter, and a split one is kept as ordinary output.
MAX_LINE_CHARS = 4096
TERMINATE_GRACE_S = 5.0
# After the command exits, how long its pipes get to deliver their last lines (a descendant may hold them open).
PIPE_DRAIN_S = 2.0


class CommandError(RuntimeError):
    """A command that cannot be started."""


class CommandParams(WorkloadParams):
    """The program to run and how to judge it."""

    argv: list[Annotated[str, Field(min_length=1)]] = Field(
        description="program and arguments, run directly (no shell), e.g. [python, train.py]"
    )
    cwd: str | None = Field(default=None, description="working directory; the worker's when omitted")
    env: dict[str, str] = Field(default_factory=dict, description="variables set on top of the worker's environment")
    stall_after_s: float = Field(default=300.0, gt=0, description="seconds without a progress line that make a stall")
    unit: str = Field(default="units/s", min_length=1, description="what the progress lines' work per second measures")

    @field_validator("argv")
    @classmethod
    def _names_a_program(cls, argv: list[str]) -> list[str]:
        if not argv:
            raise ValueError("name the program to run and its arguments, e.g. [python, train.py, --epochs, '1']")
        return argv


@dataclass(frozen=True)
class _Line:
    stream: str  # stdout | stderr
    text: str
    read_s: float  # time.monotonic() when the line arrived


def _read_lines(pipe: IO[str], stream: str, lines: queue.Queue[_Line]) -> None:
    for text in iter(partial(pipe.readline, MAX_LINE_CHARS), ""):
        lines.put(_Line(stream=stream, text=text.rstrip("\n"), read_s=time.monotonic()))


def _progress_report(text: str) -> dict[str, Any] | None:
    """The JSON object a progress line holds, or None for any other line."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        report = json.loads(text)
    except ValueError:
        return None
    if isinstance(report, dict) and ("work" in report or "throughput" in report):
        return report
    return None


def _progress_problem(report: dict[str, Any], unit: str) -> str | None:
    """Why a progress line cannot be counted, or None when it can."""
    for key in ("work", "throughput"):
        value = report.get(key)
        if key in report and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0
        ):
            return f"{key} must be a finite number of zero or more, got {value!r}"
    if "unit" in report and report["unit"] != unit:
        return f"unit {report['unit']!r} differs from the plan's unit {unit!r}; fix one of them"
    return None


def _group_running(pgid: int) -> bool:
    """Whether any process of the group still runs; a zombie waiting for its parent to reap it counts as gone."""
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def _die_with_parent() -> None:
    """In the command's process, before exec: on Linux, the kernel kills it if the worker dies first (SIGKILL)."""
    if sys.platform == "linux":
        prctl_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(prctl_set_pdeathsig, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # every process of the group has already exited
        os.killpg(pgid, signum)


class Command(Workload):
    """Runs the plan's argv for the slot and counts the work its progress lines report, over wall time."""

    name: ClassVar[str] = "command"
    unit: ClassVar[str] = "units/s"
    sim_profile: ClassVar[SimProfile] = USER_WORKLOAD_SIM_PROFILE
    Params: ClassVar[type[WorkloadParams]] = CommandParams

    def prepare(self, device: torch.device) -> None:
        self._params = CommandParams.model_validate(self.spec.params)
        # The command inherits the worker's device visibility; SOAK_DEVICE names the device within it.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SOAK_DEVICE": str(device), **self._params.env}
        try:
            self._process = subprocess.Popen(
                self._params.argv,
                cwd=self._params.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,  # its own process group, so that teardown reaches everything it starts
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            raise CommandError(f"cannot start {shlex.join(self._params.argv)}: {error}; check argv and cwd") from None
        log.info(
            "command pid %d started on %s, reporting %s: %s",
            self._process.pid,
            device,
            self._params.unit,
            shlex.join(self._params.argv),
        )
        self._lines: queue.Queue[_Line] = queue.Queue()
        self._readers = [
            threading.Thread(
                target=_read_lines, args=(pipe, stream, self._lines), name=f"command-{stream}", daemon=True
            )
            for pipe, stream in ((self._process.stdout, "stdout"), (self._process.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()
        self._tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        self._started_s = time.monotonic()
        self._last_progress_s: float | None = None
        self._stalled = False
        self._exited = False
        self._bad_progress_reported = False

    @property
    def pid(self) -> int:
        """The command's process id, which is also its process group id."""
        return self._process.pid

    def step(self) -> float:
        """Count what the command reported since the last step, without waiting; notice an exit or a stall."""
        work_units = self._drain()
        if self._exited:
            return work_units
        exit_code = self._process.poll()
        if exit_code is None:
            self._check_stall()
            return work_units
        self._exited = True
        for reader in self._readers:
            reader.join(timeout=PIPE_DRAIN_S)
        work_units += self._drain()
        program = shlex.join(self._params.argv)
        if exit_code == 0:
            elapsed_s = time.monotonic() - self._started_s
            self.emit(
                "command_exited",
                "info",
                f"{program} exited with code 0 after {elapsed_s:.0f} s, before its slot ended; "
                "the device idles until the next slot",
            )
        else:
            killed_by = f" (killed by {signal.Signals(-exit_code).name})" if exit_code < 0 else ""
            self.emit("command_failed", "warning", f"{program} exited with code {exit_code}{killed_by}", self._raw())
        return work_units

    def run_interval(self, *, end_s: float, synchronize: Callable[[], None], timer: DeviceTimer) -> IntervalResult:
        """Collect progress until `end_s`, timed by the wall clock.

        The command runs in another process with its own device context, so this worker's `timer` and
        `synchronize` cannot see its work; the wall time its progress arrives over is the honest time base, and
        the command runs unthrottled, so the plan's duty_cycle does not apply.
        """
        result = IntervalResult(start_s=time.time(), end_s=end_s)
        try:
            while (remaining_s := end_s - time.time()) > 0:
                time.sleep(min(POLL_S, remaining_s))
                result.work_units += self.step()
                result.steps += 1
        except Exception as error:  # a failing step is an event, never a crash of the worker
            log.warning("%s step failed: %s", self.name, error)
            result.errors.append(f"{type(error).__name__}: {error}")
            time.sleep(max(0.0, end_s - time.time()))
        result.end_s = time.time()
        result.busy_s = result.device_s = result.end_s - result.start_s
        result.events, self._events = self._events, []
        return result

    def teardown(self) -> None:
        """Stop the command and everything it started: SIGTERM to its group, SIGKILL to what outlives the grace."""
        pgid = self._process.pid
        _signal_group(pgid, signal.SIGTERM)
        deadline_s = time.monotonic() + TERMINATE_GRACE_S
        while time.monotonic() < deadline_s:
            self._process.poll()  # reaps the command itself, so that it stops counting as a member
            if not _group_running(pgid):
                break
            time.sleep(POLL_S)
        else:
            log.warning("command pid %d outlived SIGTERM by %.0f s; sending SIGKILL", pgid, TERMINATE_GRACE_S)
            _signal_group(pgid, signal.SIGKILL)
        try:
            self._process.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            log.error("command pid %d survived SIGKILL; it may be stuck in the kernel (a hung driver call?)", pgid)
            return
        for reader in self._readers:
            reader.join(timeout=PIPE_DRAIN_S)
        if any(reader.is_alive() for reader in self._readers):
            log.warning("a process that left command pid %d's group still holds its output open", pgid)
            return
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None:
                pipe.close()

    def _drain(self) -> float:
        work_units = 0.0
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return work_units
            report = _progress_report(line.text) if line.stream == "stdout" else None
            if report is None:
                self._tail.append(line.text)
            else:
                work_units += self._count(report, line)

    def _count(self, report: dict[str, Any], line: _Line) -> float:
        """Work units one progress line reports: its `work`, or its `throughput` over the time since the last line."""
        problem = _progress_problem(report, self._params.unit)
        if problem is not None:
            self._tail.append(line.text)
            if not self._bad_progress_reported:
                self._bad_progress_reported = True
                self.emit("command_bad_progress", "warning", f"a progress line was not counted: {problem}", line.text)
            return 0.0
        previous_s, self._last_progress_s = self._last_progress_s, line.read_s
        self._stalled = False
        if "work" in report:
            return float(report["work"])
        # A rate covers the time since the previous line; the first one has nothing to cover, only start-up.
        return float(report["throughput"]) * (line.read_s - previous_s) if previous_s is not None else 0.0

    def _check_stall(self) -> None:
        silent_since_s = self._last_progress_s if self._last_progress_s is not None else self._started_s
        if not self._stalled and time.monotonic() - silent_since_s >= self._params.stall_after_s:
            self._stalled = True
            self.emit(
                "command_stalled",
                "warning",
                f"pid {self.pid} printed no progress line for {self._params.stall_after_s:g} s; it may hang, "
                "or it does not report progress (see docs/user-workloads.md)",
                self._raw(),
            )

    def _raw(self) -> str:
        return "\n".join(self._tail)

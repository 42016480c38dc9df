"""Your own workloads: entry-point classes and functions imported for real, commands run as real processes."""

from __future__ import annotations

import re
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from soak.plan import PlanError, WorkloadSpec, load_plan, parse_plan
from soak.progress import progress
from soak.workloads.backends import CpuDevice, OpenDevice
from soak.workloads.base import IntervalResult, Workload, WorkloadEvent
from soak.workloads.command import Command, CommandError
from soak.workloads.entry_point import EntryPoint, EntryPointError

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE = REPOSITORY / "examples" / "user-workload"
INTERVAL_S = 0.2
# A safety net against a hang, not a timing expectation: what a test waits for normally arrives in a few intervals.
MAX_INTERVALS = 100

USER_MODULE = """
from typing import ClassVar

import torch
from pydantic import Field

from soak.workloads.base import Workload, WorkloadParams


class DoublingParams(WorkloadParams):
    size: int = Field(ge=1)


class Doubling(Workload):
    name: ClassVar[str] = "doubling"
    unit: ClassVar[str] = "elements/s"
    sim_profile = None
    Params: ClassVar[type[WorkloadParams]] = DoublingParams

    def prepare(self, device):
        self._x = torch.ones(DoublingParams.model_validate(self.spec.params).size, device=device)
        self._y = self._x * 2

    def step(self):
        self._y = self._x * 2
        return float(self._x.numel())

    def verify(self):
        return bool((self._y == 2).all())


def add_up(device, size):
    torch.ones(size, device=device).sum()
    return float(size)


def not_a_number(device):
    return "lots"


class Unrelated:
    pass


CONSTANT = 3
"""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """CpuDevice sets one torch thread for the process; give the setting back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module, written to disk and importable by its name, as a worker would find an installed package."""
    name = f"user_bench_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def spec(name: str, params: dict[str, Any]) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": name, "params": params})


@contextmanager
def prepared_on_cpu(workload: Workload) -> Iterator[CpuDevice]:
    """The workload prepared on the CPU device, torn down at the end even when the test fails."""
    device = CpuDevice()
    device.prepare(workload)
    try:
        yield device
    finally:
        device.teardown(workload)


def run_intervals(workload: Workload, device: CpuDevice, count: int) -> list[IntervalResult]:
    return [device.run_interval(workload, end_s=time.time() + INTERVAL_S) for _ in range(count)]


def run_until_event(workload: Workload, device: CpuDevice, kind: str) -> tuple[list[IntervalResult], WorkloadEvent]:
    """Run intervals until the workload emits an event of `kind`; return the intervals and that event."""
    results: list[IntervalResult] = []
    for _ in range(MAX_INTERVALS):
        results.append(device.run_interval(workload, end_s=time.time() + INTERVAL_S))
        for event in results[-1].events:
            if event.kind == kind:
                return results, event
    raise AssertionError(f"no {kind} event in {MAX_INTERVALS} intervals: {[r.events for r in results]}")


def command(script: str, **params: Any) -> Command:
    return Command(spec("command", {"argv": [sys.executable, "-c", textwrap.dedent(script)], **params}))


def plan_with(workload: dict[str, Any]) -> dict[str, Any]:
    return {"name": "user", "duration": "1h", "devices": [{"vendor": "cpu"}], "workloads": [workload]}


def gone(pid: int) -> bool:
    """Whether a process has ended; a zombie waiting for its parent to reap it has ended."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize(
    ("target", "args"), [("Doubling", {"size": 4096}), ("add_up", {"size": 4096})], ids=["class", "function"]
)
def test_an_entry_point_target_runs_on_the_cpu_and_reports_work(
    user_module: str, target: str, args: dict[str, Any]
) -> None:
    workload = EntryPoint(spec("entry_point", {"target": f"{user_module}:{target}", "args": args}))
    with prepared_on_cpu(workload) as device:
        results = run_intervals(workload, device, 2)

    for result in results:
        assert result.errors == [] and result.sdc_mismatches == 0
        assert result.work_units > 0 and result.units_per_s > 0
        assert result.work_units % 4096 == 0


@pytest.mark.parametrize(
    ("target", "args", "expected"),
    [
        ("no_such_module_for_soak:run", {}, "cannot import 'no_such_module_for_soak'"),
        ("{module}:missing", {}, "has no attribute 'missing'"),
        ("{module}:Unrelated", {}, "not a soak.workloads.base.Workload subclass"),
        ("{module}:CONSTANT", {}, "neither a Workload subclass nor a function"),
        ("{module}:add_up", {"sise": 4}, "cannot be called as fn(device, **args)"),
    ],
)
def test_an_entry_point_that_cannot_run_says_why_at_prepare(
    user_module: str, target: str, args: dict[str, Any], expected: str
) -> None:
    workload = EntryPoint(spec("entry_point", {"target": target.format(module=user_module), "args": args}))

    with pytest.raises(EntryPointError, match=re.escape(expected)):
        CpuDevice().prepare(workload)


def test_an_entry_point_function_that_returns_no_number_is_an_interval_error(user_module: str) -> None:
    workload = EntryPoint(spec("entry_point", {"target": f"{user_module}:not_a_number"}))
    with prepared_on_cpu(workload) as device:
        [result] = run_intervals(workload, device, 1)

    assert result.work_units == 0
    assert any("returned 'lots'" in error for error in result.errors)


@pytest.mark.parametrize(
    ("workload", "expected"),
    [
        (
            {"name": "entry_point", "params": {"target": "mypackage.bench"}},
            "workloads[0].params.target: 'mypackage.bench' is not a target; write module:attribute",
        ),
        ({"name": "entry_point", "params": {"target": "a:b", "unit": ""}}, "workloads[0].params.unit:"),
        ({"name": "command", "params": {"argv": []}}, "workloads[0].params.argv: name the program to run"),
        ({"name": "command", "params": {"argv": ["x"], "stall_after_s": 0}}, "workloads[0].params.stall_after_s:"),
        ({"name": "command", "params": {"argv": ["x"], "shell": True}}, "workloads[0].params.shell: unknown field"),
    ],
)
def test_a_bad_user_workload_is_rejected_by_the_plan_naming_the_field(workload: dict[str, Any], expected: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(plan_with(workload))

    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_progress_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    progress(work=512, unit="samples/s")
    progress(throughput=1234.5)

    assert capsys.readouterr().out.splitlines() == [
        '{"work": 512.0, "unit": "samples/s"}',
        '{"throughput": 1234.5}',
    ]


@pytest.mark.parametrize("fields", [{}, {"unit": "samples/s"}, {"work": -1.0}, {"throughput": float("nan")}])
def test_progress_refuses_a_line_soak_would_not_count(
    fields: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="progress"):
        progress(**fields)

    assert capsys.readouterr().out == ""


def test_the_example_plan_is_valid() -> None:
    plan = load_plan(EXAMPLE / "plan.yaml")

    assert {workload.name for workload in plan.workloads} == {"entry_point", "command"}


def test_the_example_workload_class_runs_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    [entry] = [w for w in load_plan(EXAMPLE / "plan.yaml").workloads if w.name == "entry_point"]
    workload = EntryPoint(entry)
    with prepared_on_cpu(workload) as device:
        [result] = run_intervals(workload, device, 1)

    assert result.work_units > 0 and result.errors == [] and result.sdc_mismatches == 0


def test_a_command_reports_the_work_of_its_progress_lines() -> None:
    workload = command(
        """
        from soak.progress import progress
        print("starting")
        for _ in range(3):
            progress(work=5, unit="samples/s")
        """,
        unit="samples/s",
    )
    with prepared_on_cpu(workload) as device:
        results, exited = run_until_event(workload, device, "command_exited")

    assert sum(result.work_units for result in results) == 15
    assert exited.severity == "info" and "exited with code 0" in exited.message
    assert not any(event.kind == "command_failed" for result in results for event in result.events)


@pytest.mark.parametrize(
    ("script", "counts"),
    [
        ("progress(work=0); time.sleep(0.1); progress(throughput=1000.0)", True),
        ("progress(throughput=1000.0)", False),  # nothing before it to cover but the start-up
    ],
    ids=["after-a-line", "first-line"],
)
def test_a_throughput_line_counts_its_rate_over_the_time_since_the_previous_line(script: str, counts: bool) -> None:
    workload = command(f"import time; from soak.progress import progress; {script}")
    with prepared_on_cpu(workload) as device:
        results, _ = run_until_event(workload, device, "command_exited")

    assert (sum(result.work_units for result in results) > 0) is counts


def test_the_example_training_script_reports_every_sample() -> None:
    argv = [sys.executable, str(EXAMPLE / "train.py"), "--batch-size", "8", "--steps", "5"]
    workload = Command(spec("command", {"argv": argv, "unit": "samples/s"}))
    with prepared_on_cpu(workload) as device:
        results, _ = run_until_event(workload, device, "command_exited")

    assert sum(result.work_units for result in results) == 40


def test_a_command_that_cannot_start_says_why_at_prepare(tmp_path: Path) -> None:
    workload = Command(spec("command", {"argv": [str(tmp_path / "no-such-program")]}))

    with pytest.raises(CommandError, match=r"cannot start .*no-such-program.*check argv and cwd"):
        CpuDevice().prepare(workload)


def test_a_failing_command_is_an_event_with_its_exit_code_and_output() -> None:
    workload = command(
        """
        import sys
        from soak.progress import progress
        progress(work=1)
        print("loading shard 7")
        sys.exit("CUDA error: an illegal memory access was encountered")
        """
    )
    with prepared_on_cpu(workload) as device:
        _, failed = run_until_event(workload, device, "command_failed")

    assert failed.severity == "warning"
    assert "exited with code 1" in failed.message
    assert "loading shard 7" in failed.raw
    assert "CUDA error: an illegal memory access was encountered" in failed.raw


def test_a_command_that_prints_no_progress_is_a_stall() -> None:
    workload = command("import time; print('still importing'); time.sleep(60)", stall_after_s=0.2)
    with prepared_on_cpu(workload) as device:
        results, stalled = run_until_event(workload, device, "command_stalled")

    assert stalled.severity == "warning" and "no progress line for 0.2 s" in stalled.message
    assert "still importing" in stalled.raw
    assert all(result.work_units == 0 for result in results)


def test_a_bad_progress_line_is_reported_and_not_counted() -> None:
    workload = command('print(\'{"work": -3}\'); print(\'{"work": 2, "unit": "tokens/s"}\')', unit="samples/s")
    with prepared_on_cpu(workload) as device:
        results, _ = run_until_event(workload, device, "command_exited")

    bad = [event for result in results for event in result.events if event.kind == "command_bad_progress"]
    assert len(bad) == 1 and "work must be a finite number of zero or more" in bad[0].message
    assert sum(result.work_units for result in results) == 0


def test_a_simulated_device_stands_in_for_user_code_without_running_it(
    tmp_path: Path, simulated_device: OpenDevice
) -> None:
    marker = tmp_path / "ran"
    device = simulated_device
    workloads: list[Workload] = [
        EntryPoint(spec("entry_point", {"target": "no_such_module_for_soak:run"})),
        Command(spec("command", {"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]})),
    ]

    for workload in workloads:
        device.prepare(workload)
        result = device.run_interval(workload, end_s=time.time() + INTERVAL_S)
        device.teardown(workload)

        assert result.work_units > 0 and result.errors == []
    assert not marker.exists()


def test_teardown_ends_the_command_and_the_processes_it_started(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    workload = command(
        f"""
        import subprocess, sys, time
        from soak.progress import progress
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(child_pid_file)!r}, "w").write(str(child.pid))
        progress(work=1)
        time.sleep(600)
        """
    )
    with prepared_on_cpu(workload) as device:
        for _ in range(MAX_INTERVALS):
            if sum(result.work_units for result in run_intervals(workload, device, 1)) > 0:
                break
        child_pid = int(child_pid_file.read_text())
        assert not gone(workload.pid) and not gone(child_pid)

    assert gone(workload.pid)
    assert gone(child_pid)


def _start_command_then_wait(pid_file: Path) -> None:
    """A worker that starts a long command, says its pid, and waits to be killed."""
    device = CpuDevice()
    command = Command(WorkloadSpec.model_validate({"name": "command", "params": {"argv": ["sleep", "300"]}}))
    device.prepare(command)
    pid_file.write_text(str(command.pid))
    time.sleep(300)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is a Linux feature")
def test_a_command_does_not_outlive_a_killed_worker(tmp_path: Path) -> None:
    import multiprocessing

    pid_file = tmp_path / "command.pid"
    worker = multiprocessing.get_context("spawn").Process(target=_start_command_then_wait, args=(pid_file,))
    worker.start()
    deadline_s = time.time() + 60
    while not pid_file.exists() and time.time() < deadline_s:
        time.sleep(0.1)
    command = psutil.Process(int(pid_file.read_text()))
    assert command.is_running() and command.name() == "sleep"
    worker.kill()  # SIGKILL: no teardown runs in the worker
    worker.join(timeout=10)
    gone, _ = psutil.wait_procs([command], timeout=10)
    assert gone == [command]

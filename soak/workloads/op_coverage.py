"""Operator coverage: whether the operators and features models use run natively, fall back to the CPU, or fail."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import Field, field_validator

from soak.plan import WorkloadSpec
from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.families import FAMILIES
from soak.workloads.gemm import FP8_MIN_CAPABILITY
from soak.workloads.idle import NAP_S

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

COMPILE_OP = "torch.compile block"
# The catalogue takes seconds (torch.compile alone can take a minute); running it back to back is no soak test.
MIN_RERUN_S = 60.0
# bf16 rounds at 0.4 %; attention, autocast and fp8 results carry a few such roundings, accumulated.
HALF_TOLERANCE = 3e-2
# fp32 matmuls may run as tf32 (10-bit mantissa) where another workload enabled it in this process.
MATMUL_TOLERANCE = 2e-2
ELEMENTWISE_TOLERANCE = 1e-4
# Rotation angles reach the sequence length in radians, where a device's fast sin/cos keeps fewer digits.
ROTARY_TOLERANCE = 1e-3
# Ascend's torch_npu ("will fall back to run on the CPU") and torch's own MPS fallback both say so in a warning.
_FALLBACK_WARNING = re.compile(r"fall(?:s|ing)?[ -]?back|fallback", re.IGNORECASE)
_CPU_WORD = re.compile(r"\bcpu\b", re.IGNORECASE)


class OpStatus(StrEnum):
    """How an operator ran on the device."""

    NATIVE = "native"
    FELL_BACK = "fell back to cpu"
    UNSUPPORTED = "unsupported here"
    FAILED = "failed"


@dataclass(frozen=True)
class OpResult:
    """One catalogue entry's verdict on one device."""

    op: str
    status: OpStatus
    detail: str = ""
    """One line: the error, why the op is unsupported, or the fallback warning."""
    raw: str = ""
    """The full traceback and every warning the op raised."""

    @property
    def severity(self) -> str:
        """info when the op ran natively, warning otherwise."""
        return "info" if self.status is OpStatus.NATIVE else "warning"

    @property
    def message(self) -> str:
        """`<op>: <status>[: <detail>]`, the event message."""
        return f"{self.op}: {self.status.value}" + (f": {self.detail}" if self.detail else "")


class OpUnsupported(RuntimeError):
    """The device or this torch build has no path for the op at all (as opposed to a path that broke)."""


@dataclass(frozen=True)
class Outcome:
    """What one check produced on the device, and the reference it should match (computed on the host)."""

    output: torch.Tensor
    expected: torch.Tensor | None = None
    tolerance: float = 0.0

    def problem(self) -> str | None:
        """Why the output is wrong, or None when it is finite and matches the reference."""
        import torch

        actual = self.output.detach().cpu().double()
        if not bool(torch.isfinite(actual).all()):
            return "the result holds NaN or Inf"
        if self.expected is None:
            return None
        expected = self.expected.double()
        if actual.shape != expected.shape:
            return f"the result has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
        if not torch.allclose(actual, expected, rtol=self.tolerance, atol=self.tolerance):
            error = float((actual - expected).abs().max())
            return f"wrong result: up to {error:.3g} from the reference (tolerance {self.tolerance:g})"
        return None


class Check(Protocol):
    """Runs one op on a device and says what it should have produced."""

    def __call__(self, device: torch.device) -> Outcome: ...


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _error_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {_first_line(str(error))}"


@contextlib.contextmanager
def _every_warning() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning, including those torch would otherwise give only once per process."""
    import torch

    warn_always = torch.is_warn_always_enabled()
    # torch_npu announces each fallback once per process; a rerun of the catalogue must see it again.
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Imports that the first call of an op triggers say nothing about the op.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            yield caught
    finally:
        torch.set_warn_always(warn_always)


def probe_op(op: str, check: Check, device: torch.device) -> OpResult:
    """Run one check on `device` and classify it: native, fell back to the CPU, unsupported or failed."""
    with _every_warning() as caught:
        try:
            outcome = check(device)
            output_device = outcome.output.device
            problem = outcome.problem()  # copies to the host, so asynchronous device errors surface here
        except OpUnsupported as error:
            detail = _first_line(str(error))
            return OpResult(op, OpStatus.UNSUPPORTED, detail, _raw(str(error), caught))
        except Exception as error:  # every failure is a verdict on the op, never a crash of the worker
            return OpResult(op, OpStatus.FAILED, _error_line(error), _raw(traceback.format_exc(), caught))
    raw = _raw("", caught)
    if problem is not None:
        return OpResult(op, OpStatus.FAILED, problem, raw)
    if device.type != "cpu":
        fallback_warning = next((text for text in _warning_texts(caught) if _says_cpu_fallback(text)), None)
        if fallback_warning is not None:
            return OpResult(op, OpStatus.FELL_BACK, _first_line(fallback_warning), raw)
        if output_device.type != device.type:
            return OpResult(op, OpStatus.FELL_BACK, f"the result came back on {output_device}", raw)
    return OpResult(op, OpStatus.NATIVE, "", raw)


def _warning_texts(caught: list[warnings.WarningMessage]) -> list[str]:
    """Each distinct warning once, in the order first raised."""
    return list(dict.fromkeys(f"{warning.category.__name__}: {warning.message}" for warning in caught))


def _says_cpu_fallback(text: str) -> bool:
    return bool(_FALLBACK_WARNING.search(text) and _CPU_WORD.search(text))


def _raw(text: str, caught: list[warnings.WarningMessage]) -> str:
    return "\n".join([text.rstrip(), *_warning_texts(caught)] if text else _warning_texts(caught))


def _randn(*shape: int, seed: int, dtype: torch.dtype | None = None, scale: float = 1.0) -> torch.Tensor:
    """Reproducible normal values made on the host, rounded to `dtype` there so references see the same inputs."""
    import torch

    values = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale
    return values.to(dtype) if dtype is not None else values


def _attention_reference(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention written out in float32: softmax(q·kᵀ/√d, masked) · v."""
    scores = query.float() @ key.float().transpose(-2, -1) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ value.float()


def _sdpa(*, masked: bool = False, causal: bool = False, backend: str | None = None) -> Check:
    """scaled_dot_product_attention in bf16, optionally with a boolean mask, causal, or one backend forced."""

    def check(device: torch.device) -> Outcome:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # Head size 64 and bf16: inputs every fused kernel (flash, memory-efficient, cuDNN) accepts.
        query, key, value = (_randn(2, 4, 64, 64, seed=seed, dtype=torch.bfloat16) for seed in (1, 2, 3))
        mask = None
        if masked:
            mask = torch.rand(64, 64, generator=torch.Generator().manual_seed(4)) > 0.5
            mask |= torch.eye(64, dtype=torch.bool)  # no fully masked row, whose softmax would be NaN
        elif causal:
            mask = torch.ones(64, 64, dtype=torch.bool).tril()
        context: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if backend is not None:
            if not hasattr(SDPBackend, backend):
                raise OpUnsupported(f"this torch has no SDPBackend.{backend}")
            context = sdpa_kernel(getattr(SDPBackend, backend))
        try:
            with context:
                output = torch.nn.functional.scaled_dot_product_attention(
                    query.to(device),
                    key.to(device),
                    value.to(device),
                    attn_mask=mask.to(device) if masked and mask is not None else None,
                    is_causal=causal,
                )
        except RuntimeError as error:
            if backend is not None and "No viable backend" in str(error):
                raise OpUnsupported(f"no {backend} kernel for {device.type}: {_first_line(str(error))}") from error
            raise
        return Outcome(output, _attention_reference(query, key, value, mask), HALF_TOLERANCE)

    return check


def _rms_norm(device: torch.device) -> Outcome:
    import torch

    inputs, weight = _randn(8, 256, seed=10), _randn(256, seed=11)
    output = torch.nn.functional.rms_norm(inputs.to(device), (256,), weight.to(device), eps=1e-6)
    expected = inputs * torch.rsqrt(inputs.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
    return Outcome(output, expected, ELEMENTWISE_TOLERANCE)


def _layer_norm(device: torch.device) -> Outcome:
    import torch

    inputs, weight, bias = _randn(8, 256, seed=12), _randn(256, seed=13), _randn(256, seed=14)
    output = torch.nn.functional.layer_norm(inputs.to(device), (256,), weight.to(device), bias.to(device), eps=1e-5)
    mean = inputs.mean(dim=-1, keepdim=True)
    variance = inputs.var(dim=-1, unbiased=False, keepdim=True)
    expected = (inputs - mean) / torch.sqrt(variance + 1e-5) * weight + bias
    return Outcome(output, expected, ELEMENTWISE_TOLERANCE)


def _gelu_tanh(device: torch.device) -> Outcome:
    import torch

    inputs = _randn(8, 256, seed=15)
    output = torch.nn.functional.gelu(inputs.to(device), approximate="tanh")
    expected = 0.5 * inputs * (1 + torch.tanh(math.sqrt(2 / math.pi) * (inputs + 0.044715 * inputs.pow(3))))
    return Outcome(output, expected, ELEMENTWISE_TOLERANCE)


def _silu(device: torch.device) -> Outcome:
    import torch

    inputs = _randn(8, 256, seed=16)
    output = torch.nn.functional.silu(inputs.to(device))
    return Outcome(output, inputs * torch.sigmoid(inputs), ELEMENTWISE_TOLERANCE)


def _swiglu(device: torch.device) -> Outcome:
    """The feed-forward block of LLaMA-style models: down(silu(gate(x)) · up(x))."""
    import torch

    linear = torch.nn.functional.linear
    inputs = _randn(8, 256, seed=17)
    gate, up = _randn(512, 256, seed=18, scale=256**-0.5), _randn(512, 256, seed=19, scale=256**-0.5)
    down = _randn(256, 512, seed=20, scale=512**-0.5)
    on_device = inputs.to(device)
    output = linear(
        torch.nn.functional.silu(linear(on_device, gate.to(device))) * linear(on_device, up.to(device)), down.to(device)
    )
    gated = inputs @ gate.T
    expected = (gated * torch.sigmoid(gated) * (inputs @ up.T)) @ down.T
    return Outcome(output, expected, MATMUL_TOLERANCE)


def _adamw(*, fused: bool = False, foreach: bool = False) -> Check:
    """One AdamW step with the fused or the multi-tensor implementation, against the per-parameter loop on the CPU."""

    def check(device: torch.device) -> Outcome:
        import torch

        initial, gradient = _randn(64, 64, seed=21), _randn(64, 64, seed=22)
        # Copies even on the CPU: the step updates the parameter in place, and the reference needs the original.
        parameter = torch.nn.Parameter(initial.to(device, copy=True))
        parameter.grad = gradient.to(device, copy=True)
        torch.optim.AdamW([parameter], lr=1e-2, fused=fused, foreach=foreach).step()
        reference = torch.nn.Parameter(initial.clone())
        reference.grad = gradient.clone()
        torch.optim.AdamW([reference], lr=1e-2, foreach=False, fused=False).step()
        return Outcome(parameter.detach(), reference.detach(), ELEMENTWISE_TOLERANCE)

    return check


def _apply_rotary(inputs: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (RoFormer, rotate-half form) over the sequence dimension -2."""
    import torch

    sequence, head_size = inputs.shape[-2], inputs.shape[-1]
    half = head_size // 2
    exponents = torch.arange(half, device=inputs.device, dtype=torch.float32) / half
    positions = torch.arange(sequence, device=inputs.device, dtype=torch.float32)
    angles = torch.outer(positions, 10_000.0**-exponents)
    cos, sin = angles.cos(), angles.sin()
    first, second = inputs[..., :half], inputs[..., half:]
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


def _rotary(device: torch.device) -> Outcome:
    inputs = _randn(2, 4, 64, 64, seed=23)
    return Outcome(_apply_rotary(inputs.to(device)), _apply_rotary(inputs), ROTARY_TOLERANCE)


def _autocast(dtype_name: str) -> Check:
    """A linear layer under autocast, which must really compute in the half type."""

    def check(device: torch.device) -> Outcome:
        import torch

        dtype = getattr(torch, dtype_name)
        inputs, weight, bias = _randn(32, 64, seed=24), _randn(64, 64, seed=25, scale=0.125), _randn(64, seed=26)
        with torch.autocast(device_type=device.type, dtype=dtype):
            output = torch.nn.functional.linear(inputs.to(device), weight.to(device), bias.to(device))
        if output.dtype != dtype:
            raise RuntimeError(f"autocast left the matmul in {output.dtype}, not {dtype}")
        return Outcome(output, torch.nn.functional.linear(inputs, weight, bias), HALF_TOLERANCE)

    return check


def _int8_matmul(device: torch.device) -> Outcome:
    import torch

    generator = torch.Generator().manual_seed(27)
    left = torch.randint(-128, 128, (32, 64), generator=generator, dtype=torch.int8)
    right = torch.randint(-128, 128, (64, 32), generator=generator, dtype=torch.int8)
    output = torch._int_mm(left.to(device), right.to(device))
    return Outcome(output, left.long() @ right.long(), 0.0)


def _fp8_matmul(device: torch.device) -> Outcome:
    import torch

    if device.type == "cpu":
        raise OpUnsupported("the CPU has no FP8 matrix units; fp8 matmul is an accelerator feature")
    if device.type == "cuda" and torch.version.hip is None:
        capability = torch.cuda.get_device_capability(device)
        if capability < FP8_MIN_CAPABILITY:
            raise OpUnsupported(
                f"FP8 tensor cores arrive with compute capability {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}; "
                f"this device has {capability[0]}.{capability[1]}"
            )
    left = _randn(32, 64, seed=28, dtype=torch.float8_e4m3fn)
    # _scaled_mm wants its second operand column-major.
    right = _randn(64, 32, seed=29, dtype=torch.float8_e4m3fn).t().contiguous().t()
    scale = torch.ones((), device=device)
    output = torch._scaled_mm(left.to(device), right.to(device), scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16)
    return Outcome(output, left.float() @ right.float(), HALF_TOLERANCE)


def _compiled_block(device: torch.device) -> Outcome:
    """A linear-GELU-linear block through torch.compile's default backend, against the same block run eagerly."""
    import torch

    torch.manual_seed(30)
    block = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(128, 64)
    ).to(device)
    inputs = _randn(16, 64, seed=31).to(device)
    with torch.no_grad():
        output = torch.compile(block)(inputs)
        expected = block(inputs).cpu()
    return Outcome(output, expected, MATMUL_TOLERANCE)


CATALOGUE: tuple[tuple[str, Check], ...] = (
    ("sdpa", _sdpa()),
    ("sdpa with boolean mask", _sdpa(masked=True)),
    ("sdpa causal", _sdpa(causal=True)),
    ("sdpa flash backend", _sdpa(backend="FLASH_ATTENTION")),
    ("sdpa memory-efficient backend", _sdpa(backend="EFFICIENT_ATTENTION")),
    ("sdpa cudnn backend", _sdpa(backend="CUDNN_ATTENTION")),
    ("sdpa math backend", _sdpa(backend="MATH")),
    ("rms_norm", _rms_norm),
    ("layer_norm", _layer_norm),
    ("gelu tanh", _gelu_tanh),
    ("silu", _silu),
    ("swiglu block", _swiglu),
    ("adamw fused", _adamw(fused=True)),
    ("adamw foreach", _adamw(foreach=True)),
    ("rotary embedding", _rotary),
    ("autocast bf16", _autocast("bfloat16")),
    ("autocast fp16", _autocast("float16")),
    ("int8 matmul (_int_mm)", _int8_matmul),
    ("fp8 matmul (_scaled_mm)", _fp8_matmul),
)
"""Every op checked in this process, in report order; torch.compile (COMPILE_OP) runs in a child process."""


def _device_module(device_type: str) -> str:
    """The package that registers `device_type` with torch (torch_npu for npu), torch itself for its own types."""
    return next((family.module for family in FAMILIES if family.torch_device_type == device_type), "torch")


class CompileCheck:
    """torch.compile of a block in a child process on the same device, polled while the slot goes on.

    A child, so that the check is bounded in time (a compiler that hangs is killed with its process group), and a
    compiler that crashes, or the compile workers it leaves behind, cannot take the soak worker with it. Polled,
    so that a compile that takes minutes neither delays the other ops' events nor overruns the slot.
    """

    def __init__(self, device: torch.device, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._deadline_s = time.monotonic() + timeout_s
        self._workdir = tempfile.TemporaryDirectory(prefix="soak-op-coverage-")
        self._result_path = Path(self._workdir.name) / "result.json"
        self._output_path = Path(self._workdir.name) / "output.log"
        with self._output_path.open("wb") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(device), str(self._result_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def poll(self) -> OpResult | None:
        """The verdict once the child has finished or overrun its time; None while it is still compiling."""
        if self._process.poll() is None and time.monotonic() < self._deadline_s:
            return None
        timed_out = self._process.poll() is None
        self._end_process()
        output = self._output_path.read_text(errors="replace")
        result_text = self._result_path.read_text() if self._result_path.exists() else None
        self._workdir.cleanup()
        if timed_out:
            return OpResult(COMPILE_OP, OpStatus.FAILED, f"did not finish within {self._timeout_s:g} s", output)
        if result_text is not None:
            verdict = json.loads(result_text)
            return OpResult(COMPILE_OP, OpStatus(verdict["status"]), verdict["detail"], verdict["raw"])
        returncode = self._process.returncode
        if returncode < 0:
            reason = f"the check process was killed by {signal.Signals(-returncode).name}"
        else:
            reason = f"the check process exited with code {returncode} without a verdict"
        return OpResult(COMPILE_OP, OpStatus.FAILED, reason, output)

    def stop(self) -> None:
        """End the child and everything it started, whether or not it has finished, and remove its files."""
        self._end_process()
        self._workdir.cleanup()

    def _end_process(self) -> None:
        # The whole group: torch.compile may have started compile workers of its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()


def run_catalogue(device: torch.device) -> list[OpResult]:
    """The verdict of every in-process catalogue entry on `device`, in catalogue order."""
    return [probe_op(op, check, device) for op, check in CATALOGUE]


def to_report(latest: dict[str, OpResult], results: list[OpResult]) -> list[OpResult]:
    """The results worth an event: ops not reported before, and ops whose status changed, saying what it was."""
    reported: list[OpResult] = []
    for result in results:
        before = latest.get(result.op)
        if before is None:
            reported.append(result)
        elif before.status is not result.status:
            detail = "; ".join(part for part in (result.detail, f"was {before.status.value}") if part)
            reported.append(dataclasses.replace(result, detail=detail))
    return reported


class OpCoverageParams(WorkloadParams):
    """Whether to check torch.compile, how long to give it, and how often to rerun the catalogue."""

    compile: bool = Field(default=True, description="also check torch.compile of a small block (seconds to minutes)")
    compile_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="seconds torch.compile may take before it counts as failed"
    )
    rerun_every_s: float = Field(
        default=0.0,
        ge=0,
        description="0 runs the catalogue once at the start of each slot; otherwise also every this many seconds",
    )

    @field_validator("rerun_every_s")
    @classmethod
    def _not_back_to_back(cls, rerun_every_s: float) -> float:
        if 0 < rerun_every_s < MIN_RERUN_S:
            raise ValueError(
                f"{rerun_every_s:g} s would rerun the catalogue almost back to back; "
                f"use 0 (once per slot) or at least {MIN_RERUN_S:g}"
            )
        return rerun_every_s


class OpCoverage(Workload):
    """Runs the operator catalogue at the start of each slot, one event per op; then idles like a light probe.

    The torch.compile verdict follows in a later interval, when its child process finishes. Re-running when the
    driver or firmware version changes needs the node agent's version telemetry (a later issue); until then
    `rerun_every_s` reruns the catalogue on a timer, and a rerun reports only the ops whose status changed.
    """

    name: ClassVar[str] = "op_coverage"
    unit: ClassVar[str] = "checks/s"
    # A burst of small kernels at the start of a slot, then nothing: a light load that holds almost no memory.
    sim_profile: ClassVar[SimProfile | None] = SimProfile(
        unit="checks/s", peak_units_per_s=0.0, power_fraction=0.3, memory_fraction=0.01
    )
    reports_throughput: ClassVar[bool] = False
    Params: ClassVar[type[WorkloadParams]] = OpCoverageParams

    def __init__(self, spec: WorkloadSpec) -> None:
        super().__init__(spec)
        self._latest: dict[str, OpResult] = {}
        self._compile_check: CompileCheck | None = None
        self._last_run_s = 0.0

    def prepare(self, device: torch.device) -> None:
        self._device = device
        self._params = OpCoverageParams.model_validate(self.spec.params)
        self._run_catalogue()

    def step(self) -> float:
        if self._compile_check is not None:
            compiled = self._compile_check.poll()
            if compiled is not None:
                self._compile_check = None
                self._record([compiled])
        elif 0 < self._params.rerun_every_s <= time.monotonic() - self._last_run_s:
            self._run_catalogue()
        time.sleep(NAP_S)
        return 0.0

    def teardown(self) -> None:
        if self._compile_check is not None:
            log.warning("op coverage: the slot ended before torch.compile finished; its check is stopped unreported")
            self._compile_check.stop()
            self._compile_check = None

    def results(self) -> list[OpResult]:
        """The latest verdict of every op checked so far, in catalogue order (torch.compile once it finishes)."""
        return list(self._latest.values())

    def _run_catalogue(self) -> None:
        if self._params.compile:
            self._compile_check = CompileCheck(self._device, timeout_s=self._params.compile_timeout_s)
        results = run_catalogue(self._device)
        counts = {status: sum(result.status is status for result in results) for status in OpStatus}
        log.info(
            "op coverage on %s: %s",
            self._device,
            ", ".join(f"{count} {status.value}" for status, count in counts.items()),
        )
        self._record(results)
        self._last_run_s = time.monotonic()

    def _record(self, results: list[OpResult]) -> None:
        for result in to_report(self._latest, results):
            self.emit("op_coverage", result.severity, result.message, result.raw)
        self._latest.update((result.op, result) for result in results)


def _compile_check_main(argv: list[str]) -> int:
    """Child-process entry: the torch.compile check on device argv[0], its verdict written as JSON to argv[1]."""
    import torch

    device_name, result_path = argv
    device = torch.device(device_name)
    importlib.import_module(_device_module(device.type))
    result = probe_op(COMPILE_OP, _compiled_block, device)
    Path(result_path).write_text(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_compile_check_main(sys.argv[1:]))

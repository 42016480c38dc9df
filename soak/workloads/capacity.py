"""Capacity: the largest allocation the device grants, what fragmentation leaves usable, the largest trainable model."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.plan import WorkloadSpec
from soak.sim.profile import SimProfile
from soak.workloads.backends import release_host_memory
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.families import FAMILIES, DeviceFamily
from soak.workloads.idle import NAP_S
from soak.workloads.precision import UnsupportedPrecision, torch_dtype

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

GIB = 1 << 30
MIB = 1 << 20
CPU_DEFAULT_PROBE_GIB = 1.0
# Host memory is shared with the node agent, the other workers and the OS: a probe takes at most this share of it.
HOST_FREE_SHARE = 0.5
# Binary searches stop within this fraction of what they search (never finer than a MiB): ten or so allocations.
RESOLUTION_FRACTION = 1 / 1024
MIN_RESOLUTION_BYTES = MIB
# Fragmentation: block sizes in units of 1/1024 of the memory probed. A churn of one mix is freed first, so that
# the caching allocator keeps its segments; the held mix then splits them, as varying activations do in training.
# Odd-length cycles, so that freeing every other block frees blocks of every size.
FRAGMENT_UNITS_PER_BUDGET = 1024
CHURN_UNITS = (8, 3, 13, 5, 21)
HOLD_UNITS = (1, 4, 2, 7, 3)
# A training step holds, per parameter, its value, its gradient and AdamW's two moments.
TENSORS_PER_PARAMETER = 4
# Per layer and sample, the linear layer's input and the GELU's input are kept for the backward pass.
ACTIVATIONS_PER_LAYER = 2
# A real training step needs a little more than the accounted state (temporaries); each retry drops this share.
TRAIN_ATTEMPTS = 4
SHRINK_FRACTION = 0.1
# What torch's allocators say when they run out, across vendors ("CUDA/NPU/MLU out of memory") and the host.
_OUT_OF_MEMORY_MARKERS = ("out of memory", "not enough memory", "cannot allocate memory", "can't allocate memory")


@dataclass(frozen=True)
class LargestAllocation:
    """The largest single block the device granted, and how far the probe was allowed to go."""

    largest_bytes: int
    bound_bytes: int
    bound_source: str


@dataclass(frozen=True)
class Fragmentation:
    """The largest block the allocator grants after mixed-size churn, out of the memory nominally free."""

    largest_bytes: int
    free_bytes: int

    @property
    def usable_fraction(self) -> float:
        """Largest grantable block over free memory: 1 means fragmentation costs nothing."""
        return min(1.0, self.largest_bytes / self.free_bytes) if self.free_bytes > 0 else 0.0


@dataclass(frozen=True)
class ModelFit:
    """The largest train-style model (linear layers with GELU, AdamW) that completed a training step."""

    parameters: int
    layers: int
    hidden: int
    batch_size: int
    precision: str
    footprint_bytes: int


@dataclass
class CapacityResults:
    """What the probes found; None where a probe did not run."""

    allocation: LargestAllocation | None = None
    fragmentation: Fragmentation | None = None
    model: ModelFit | None = None


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocator saying no, on any vendor's device or the host."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(marker in text for marker in _OUT_OF_MEMORY_MARKERS)


def empty_cache(device: torch.device) -> None:
    """Return the device allocator's cached blocks to the device, where it keeps a cache (the CPU has none)."""
    import torch

    empty = getattr(getattr(torch, device.type, None), "empty_cache", None)
    if callable(empty):
        empty()


def release_memory(device: torch.device) -> None:
    """Collect garbage and hand cached memory back: the device allocator's blocks, or the host heap's free pages."""
    if device.type == "cpu":
        # The host heap keeps freed blocks of a few MiB resident; without a trim the worker's RSS would show the
        # probes' peak for the rest of the slot.
        release_host_memory()
    else:
        gc.collect()
        empty_cache(device)


def _device_family(device: torch.device) -> DeviceFamily:
    for candidate in FAMILIES:
        if candidate.torch_device_type == device.type:
            return candidate
    raise ValueError(f"no device family drives torch device type {device.type!r}")


def probe_bound(device: torch.device, max_probe_gib: float | None) -> tuple[int, str]:
    """The most the probes may allocate on `device`, and what set that limit (0 when nothing does)."""
    free_bytes = _device_family(device).memory(device.index or 0).free_bytes
    limits: list[tuple[int, str]] = []
    if max_probe_gib is not None:
        limits.append((int(max_probe_gib * GIB), f"params.max_probe_gib = {max_probe_gib:g}"))
    if device.type == "cpu":
        if max_probe_gib is None:
            limits.append((int(CPU_DEFAULT_PROBE_GIB * GIB), f"the CPU default of {CPU_DEFAULT_PROBE_GIB:g} GiB"))
        limits.append((int(free_bytes * HOST_FREE_SHARE), "half the host's available memory"))
    elif free_bytes > 0:
        limits.append((free_bytes, "the device's free memory"))
    return min(limits) if limits else (0, "the device reports no free memory; set params.max_probe_gib")


def _allocate(device: torch.device, size_bytes: int) -> torch.Tensor | None:
    """A written block of `size_bytes`, or None when the allocator refuses it."""
    import torch

    try:
        block = torch.empty(size_bytes, dtype=torch.uint8, device=device)
        # Written, because the host (and drivers that map lazily) commit memory only when it is touched.
        block.fill_(1)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        return None
    return block


def largest_allocation_bytes(
    device: torch.device, bound_bytes: int, *, resolution_bytes: int, release_between: bool
) -> int:
    """The largest block of at most `bound_bytes` the device grants, to within `resolution_bytes`.

    With `release_between` the allocator's cache is emptied after each try, so that the device is measured;
    without, the allocator is measured in whatever state the caller left it.
    """
    granted, refused = 0, bound_bytes + 1
    size_bytes = bound_bytes
    while True:
        block = _allocate(device, size_bytes)
        if block is None:
            refused = size_bytes
        else:
            granted = size_bytes
        del block
        if release_between:
            empty_cache(device)
        if refused - granted <= resolution_bytes:
            return granted
        size_bytes = (granted + refused) // 2


def _fill(device: torch.device, budget_bytes: int, units: tuple[int, ...], unit_bytes: int) -> list[torch.Tensor]:
    """Blocks cycling through `units` sizes until the next would pass the budget or the allocator refuses it."""
    blocks: list[torch.Tensor] = []
    total_bytes = 0
    for units_now in itertools.cycle(units):
        size_bytes = units_now * unit_bytes
        if total_bytes + size_bytes > budget_bytes:
            break
        block = _allocate(device, size_bytes)
        if block is None:
            break
        blocks.append(block)
        total_bytes += size_bytes
    return blocks


def measure_fragmentation(device: torch.device, budget_bytes: int, *, resolution_bytes: int) -> Fragmentation:
    """Churn, hold mixed-size blocks, free every other one, then find the largest block still granted."""
    unit_bytes = max(budget_bytes // FRAGMENT_UNITS_PER_BUDGET, 1)
    churn = _fill(device, budget_bytes, CHURN_UNITS, unit_bytes)
    del churn
    held = _fill(device, budget_bytes, HOLD_UNITS, unit_bytes)
    del held[1::2]
    free_bytes = budget_bytes - sum(block.numel() for block in held)
    largest_bytes = largest_allocation_bytes(
        device, free_bytes, resolution_bytes=resolution_bytes, release_between=False
    )
    del held
    return Fragmentation(largest_bytes=largest_bytes, free_bytes=free_bytes)


def _layer_bytes(hidden: int, batch_size: int, element_bytes: int) -> int:
    """One layer's training footprint: parameters, gradients, AdamW moments and saved activations."""
    parameters = hidden * hidden + hidden
    return (TENSORS_PER_PARAMETER * parameters + ACTIVATIONS_PER_LAYER * batch_size * hidden) * element_bytes


def _grow_layers(
    device: torch.device, bound_bytes: int, *, hidden: int, batch_size: int, dtype: torch.dtype
) -> list[torch.nn.Linear]:
    """Linear layers added, each with its training state beside it, until the bound or the first refusal."""
    import torch

    layer_bytes = _layer_bytes(hidden, batch_size, torch.empty((), dtype=dtype).element_size())
    layers: list[torch.nn.Linear] = []
    # Stand-ins for the gradients, moments and activations a step will hold, so that growth stops where it would.
    state: list[torch.Tensor] = []
    while (len(layers) + 1) * layer_bytes <= bound_bytes:
        try:
            layer = torch.nn.Linear(hidden, hidden, device=device, dtype=dtype)
            layer_state = [
                torch.zeros_like(parameter)
                for parameter in layer.parameters()
                for _ in range(TENSORS_PER_PARAMETER - 1)
            ]
            layer_state += [
                torch.zeros(batch_size, hidden, device=device, dtype=dtype) for _ in range(ACTIVATIONS_PER_LAYER)
            ]
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            break
        layers.append(layer)
        state += layer_state
    return layers


def _train_step(layers: list[torch.nn.Linear], *, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
    """One forward, backward and AdamW step through the layers, each followed by a GELU."""
    import torch

    model = torch.nn.Sequential(*(module for layer in layers for module in (layer, torch.nn.GELU())))
    try:
        # The per-parameter loop: foreach would add temporaries as large as the whole model.
        optimizer = torch.optim.AdamW(model.parameters(), foreach=False)
        inputs = torch.randn(batch_size, layers[0].in_features, device=device, dtype=dtype)
        loss = model(inputs).float().pow(2).mean()
        loss.backward()
        optimizer.step()
    finally:
        model.zero_grad(set_to_none=True)


def largest_model(
    device: torch.device, bound_bytes: int, *, hidden: int, batch_size: int, dtype: torch.dtype
) -> tuple[int, int]:
    """Layers and parameters of the largest stack of width `hidden` that completes a training step (0, 0 if none)."""
    layers = _grow_layers(device, bound_bytes, hidden=hidden, batch_size=batch_size, dtype=dtype)
    empty_cache(device)
    for _ in range(TRAIN_ATTEMPTS):
        if not layers:
            break
        try:
            _train_step(layers, batch_size=batch_size, device=device, dtype=dtype)
            return len(layers), sum(parameter.numel() for layer in layers for parameter in layer.parameters())
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        del layers[-max(1, int(len(layers) * SHRINK_FRACTION)) :]
        empty_cache(device)
    return 0, 0


class CapacityParams(WorkloadParams):
    """How far the probes may go, and the width of the train-style model."""

    max_probe_gib: float | None = Field(
        default=None,
        gt=0,
        le=65_536,
        description=(
            f"most memory the probes allocate; default: the device's free memory, on the CPU "
            f"{CPU_DEFAULT_PROBE_GIB:g} GiB (and never more than half the host's available memory)"
        ),
    )
    hidden: int = Field(default=1024, ge=8, le=65_536, description="width of the train-style model's linear layers")


class Capacity(Workload):
    """Measures the device's memory capacity once at the start of each slot, one event per figure; then idles."""

    name: ClassVar[str] = "capacity"
    unit: ClassVar[str] = "probes/s"
    # The simulator holds a profile for the whole slot: it shows the memory a real device holds only for the
    # seconds the probes take, which is what tells a capacity slot apart on a simulated dashboard.
    sim_profile: ClassVar[SimProfile | None] = SimProfile(
        unit="probes/s", peak_units_per_s=0.0, power_fraction=0.3, memory_fraction=0.95
    )
    reports_throughput: ClassVar[bool] = False
    Params: ClassVar[type[WorkloadParams]] = CapacityParams

    def __init__(self, spec: WorkloadSpec) -> None:
        super().__init__(spec)
        self._results = CapacityResults()

    def prepare(self, device: torch.device) -> None:
        params = CapacityParams.model_validate(self.spec.params)
        self._results = CapacityResults()
        try:
            self._measure(device, params)
        except Exception as error:  # a probe that breaks is an event; the figures found so far stand
            log.warning("capacity probe failed on %s: %s", device, error)
            self.emit(
                "capacity",
                "warning",
                f"capacity probe failed: {type(error).__name__}: {error}",
                traceback.format_exc(),
            )
        finally:
            release_memory(device)

    def step(self) -> float:
        time.sleep(NAP_S)
        return 0.0

    def results(self) -> CapacityResults:
        """The figures of the latest prepare()."""
        return self._results

    def _measure(self, device: torch.device, params: CapacityParams) -> None:
        bound_bytes, bound_source = probe_bound(device, params.max_probe_gib)
        if bound_bytes <= 0:
            self.emit("capacity", "warning", f"nothing probed: {bound_source}")
            return
        resolution_bytes = max(int(bound_bytes * RESOLUTION_FRACTION), MIN_RESOLUTION_BYTES)
        largest_bytes = largest_allocation_bytes(
            device, bound_bytes, resolution_bytes=resolution_bytes, release_between=True
        )
        allocation = LargestAllocation(largest_bytes, bound_bytes, bound_source)
        self._results.allocation = allocation
        self._report(
            f"largest single allocation: {largest_bytes / GIB:.3f} GiB of {bound_bytes / GIB:.3f} GiB probed "
            f"(bounded by {bound_source})",
            allocation,
        )
        if largest_bytes == 0:
            return
        fragmentation = measure_fragmentation(device, largest_bytes, resolution_bytes=resolution_bytes)
        empty_cache(device)
        self._results.fragmentation = fragmentation
        self._report(
            f"after fragmentation: largest allocation {fragmentation.largest_bytes / GIB:.3f} GiB of "
            f"{fragmentation.free_bytes / GIB:.3f} GiB free, usable fraction {fragmentation.usable_fraction:.3f}",
            fragmentation,
        )
        self._measure_model(device, params, bound_bytes)

    def _measure_model(self, device: torch.device, params: CapacityParams, bound_bytes: int) -> None:
        import torch

        precision = self.spec.precision
        try:
            dtype = torch_dtype(precision)
        except UnsupportedPrecision:
            self.emit(
                "capacity",
                "warning",
                f"largest train model not measured at {precision.value}: training runs in floating point "
                "(fp32, tf32, bf16 or fp16)",
            )
            return
        batch_size = self.spec.batch_size
        layers, parameters = largest_model(
            device, bound_bytes, hidden=params.hidden, batch_size=batch_size, dtype=dtype
        )
        if layers == 0:
            self.emit(
                "capacity",
                "warning",
                f"no train model of width {params.hidden} at {precision.value} and batch {batch_size} fits in "
                f"{bound_bytes / GIB:.3f} GiB; lower params.hidden or the batch size",
            )
            return
        element_bytes = torch.empty((), dtype=dtype).element_size()
        model = ModelFit(
            parameters=parameters,
            layers=layers,
            hidden=params.hidden,
            batch_size=batch_size,
            precision=precision.value,
            footprint_bytes=layers * _layer_bytes(params.hidden, batch_size, element_bytes),
        )
        self._results.model = model
        self._report(
            f"largest train model at {precision.value}: {parameters:,} parameters ({layers} layers of "
            f"{params.hidden}×{params.hidden}), {model.footprint_bytes / GIB:.3f} GiB with gradients, AdamW moments "
            f"and activations for batch {batch_size}",
            model,
        )

    def _report(self, message: str, figures: LargestAllocation | Fragmentation | ModelFit) -> None:
        raw = dataclasses.asdict(figures)
        if isinstance(figures, Fragmentation):
            raw["usable_fraction"] = figures.usable_fraction
        self.emit("capacity", "info", message, json.dumps(raw))

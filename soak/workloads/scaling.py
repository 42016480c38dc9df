"""Data-parallel scaling: the same training step on 1, 2, 4 … n devices of a group, and how well it scales."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from soak.sim.profile import SimProfile
from soak.workloads.base import IntervalResult, WorkloadParams
from soak.workloads.collective import CollectiveParams, CollectiveWorkload
from soak.workloads.families import DeviceTimer, family
from soak.workloads.train import Trainer
from soak.workloads.transformer import BATCH_POOL, Decoder, DecoderParams, mixed_precision, synthetic_tokens

if TYPE_CHECKING:
    import torch


class ScalingParams(DecoderParams, CollectiveParams):
    """The model each member trains, and how many steps each group size runs per round."""

    steps_per_phase: int = Field(default=4, ge=1, le=10_000, description="training steps per group size per round")
    learning_rate: float = Field(default=3e-4, gt=0, le=1)


def group_sizes(world_size: int) -> list[int]:
    """1, 2, 4 … below the world size, then the world size itself."""
    sizes = [1]
    while sizes[-1] * 2 < world_size:
        sizes.append(sizes[-1] * 2)
    return [*sizes, world_size] if world_size > 1 else sizes


class Scaling(CollectiveWorkload):
    """Each round trains `steps_per_phase` steps on the first 1, 2, 4 … n members (gradients all-reduced among them).

    Weak scaling: every member trains the plan's batch size, so n members should do n times the work of one in the
    same time. Efficiency at n is t(1) / t(n), reported by rank 0 as `efficiency.<series>.n<N>_ratio` each interval,
    so that a link or a driver that degrades over weeks shows as a falling line. Throughput is the group's tokens/s
    at full size. Replicas are not kept identical across phases: what is measured is the step, not the model.
    """

    name: ClassVar[str] = "scaling"
    unit: ClassVar[str] = "tokens/s"
    # An 8-device group of the default model on H200-class parts: eight times `train`'s rate at ~90 % efficiency.
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="tokens/s", peak_units_per_s=28_800_000.0, power_fraction=0.8, memory_fraction=0.02
    )
    Params: ClassVar[type[WorkloadParams]] = ScalingParams

    def prepare(self, device: torch.device) -> None:
        import torch.distributed as dist

        params = ScalingParams.model_validate(self.spec.params)
        autocast = mixed_precision(self.name, self.spec.precision, device)
        self.join(device)
        assert self.group is not None
        self._rank = self.group.rank
        self._steps_per_phase = params.steps_per_phase
        # Every member creates every subgroup, in the same order, as torch.distributed requires.
        self._phases: list[tuple[int, Any]] = [
            (size, dist.new_group(list(range(size))) if size > 1 else None)
            for size in group_sizes(self.group.world_size)
        ]
        self._trainer = Trainer(
            Decoder(params, device), learning_rate=params.learning_rate, autocast=autocast, loss_scaling_device=None
        )
        self._batches = synthetic_tokens(
            vocab=params.vocab, batch_size=self.spec.batch_size, length=params.seq_len + 1, device=device
        )
        self._tokens_per_step = float(self.spec.batch_size * params.seq_len)
        accelerator = family(device.type)
        index = device.index or 0
        self._synchronize: Callable[[], None] = lambda: accelerator.synchronize(index)
        self._steps = 0
        self._phase_s: dict[int, list[float]] = {}

    def step(self) -> float:
        """One round over every group size; the work counted is the full group's, in the full-size phase."""
        import torch.distributed as dist

        for size, subgroup in self._phases:
            if self._rank < size:
                reduce = self._reduce_gradients(size, subgroup)
                started_s = time.perf_counter()
                for _ in range(self._steps_per_phase):
                    self._trainer.step(self._batches[self._steps % BATCH_POOL], reduce_gradients=reduce)
                    self._steps += 1
                self._synchronize()
                self._phase_s.setdefault(size, []).append(time.perf_counter() - started_s)
            dist.barrier()
        return self._phases[-1][0] * self._tokens_per_step * self._steps_per_phase

    def _reduce_gradients(self, size: int, subgroup: Any) -> Callable[[list[torch.Tensor]], None] | None:
        """Average gradients over the phase's members, in one flat all-reduce."""
        if subgroup is None:
            return None

        def reduce(grads: list[torch.Tensor]) -> None:
            import torch
            import torch.distributed as dist

            flat = torch.cat([grad.reshape(-1) for grad in grads])
            dist.all_reduce(flat, group=subgroup)
            flat /= size
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

        return reduce

    def run_interval(self, *, end_s: float, synchronize: Callable[[], None], timer: DeviceTimer) -> IntervalResult:
        self._phase_s = {}
        result = super().run_interval(end_s=end_s, synchronize=synchronize, timer=timer)
        full_size = self._phases[-1][0]
        # Throughput over the full-size phases only: the smaller phases leave members idle by design.
        result.device_s = sum(self._phase_s.get(full_size, []))
        if self._rank == 0 and self._phase_s.get(1):
            single_s = sum(self._phase_s[1]) / len(self._phase_s[1])
            for size, durations_s in self._phase_s.items():
                if size > 1:
                    result.metrics[f"efficiency.n{size}_ratio"] = single_s / (sum(durations_s) / len(durations_s))
        return result

    def teardown(self) -> None:
        for name in ("_trainer", "_batches", "_phases"):
            self.__dict__.pop(name, None)
        self.leave()

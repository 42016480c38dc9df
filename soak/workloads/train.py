"""Training: AdamW steps of a small GPT-style decoder on synthetic tokens, with its loss watched for NaN and Inf."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from soak.plan import Precision
from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.transformer import BATCH_POOL, Decoder, DecoderParams, mixed_precision, synthetic_tokens

if TYPE_CHECKING:
    import torch


class TrainParams(DecoderParams):
    """The decoder's shape, the learning rate, and the deterministic replay check."""

    learning_rate: float = Field(default=3e-4, gt=0, le=1)
    deterministic: bool = Field(default=False, description="replay the first steps and require the same losses")
    replay_every_steps: int = Field(default=200, ge=1, le=1_000_000, description="training steps between replays")


@dataclass(frozen=True)
class TrainingState:
    """Copies of what a training run starts from: weights, optimizer state and loss scale."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None


class Trainer:
    """A decoder with its AdamW optimizer and, where asked, a loss scaler: next-token steps on token batches."""

    def __init__(
        self,
        decoder: Decoder,
        *,
        learning_rate: float,
        autocast: Callable[[], AbstractContextManager[object]],
        loss_scaling_device: str | None,
    ) -> None:
        import torch

        self.decoder = decoder
        self.optimizer = torch.optim.AdamW(decoder.module.parameters(), lr=learning_rate)
        self._autocast = autocast
        self._scaler = torch.amp.GradScaler(loss_scaling_device) if loss_scaling_device is not None else None

    def step(
        self, batch: torch.Tensor, *, reduce_gradients: Callable[[list[torch.Tensor]], None] | None = None
    ) -> torch.Tensor:
        """One optimizer step on rows of seq_len + 1 tokens (inputs and shifted targets); the detached loss.

        `reduce_gradients`, where given, combines the gradients with other replicas' before the update.
        """
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.decoder.logits(self.decoder.hidden_states(batch[:, :-1]))
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        scaled = loss if self._scaler is None else self._scaler.scale(loss)
        scaled.backward()  # type: ignore[no-untyped-call]
        if reduce_gradients is not None:
            reduce_gradients([p.grad for p in self.decoder.module.parameters() if p.grad is not None])
        if self._scaler is None:
            self.optimizer.step()
        else:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        return loss.detach()

    def snapshot(self) -> TrainingState:
        """Copies of the current weights, optimizer state and loss scale."""
        return TrainingState(
            model={name: tensor.clone() for name, tensor in self.decoder.module.state_dict().items()},
            optimizer=copy.deepcopy(self.optimizer.state_dict()),
            scaler=self._scaler.state_dict() if self._scaler is not None else None,
        )

    def restore(self, state: TrainingState) -> None:
        """Continue from `state`, which stays untouched for the next restore."""
        self.decoder.module.load_state_dict(state.model)
        # The optimizer adopts the tensors it is given; a copy keeps its updates out of the snapshot.
        self.optimizer.load_state_dict(copy.deepcopy(state.optimizer))
        if self._scaler is not None and state.scaler is not None:
            self._scaler.load_state_dict(state.scaler)


class DeterministicReplay:
    """The first BATCH_POOL steps, re-run from the initial state on a second model, must repeat their losses."""

    def __init__(self, trainer: Trainer, initial: TrainingState, batches: torch.Tensor) -> None:
        self._trainer = trainer
        self._initial = initial
        self._batches = batches
        self.reference_losses = self.losses()

    def losses(self) -> list[float]:
        """The loss of each replayed step, with deterministic algorithms enabled for the replay only."""
        import torch

        self._trainer.restore(self._initial)
        enabled = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            losses = [self._trainer.step(batch) for batch in self._batches]
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        trajectory: list[float] = torch.stack(losses).tolist()
        return trajectory

    def mismatch(self) -> str | None:
        """None when a fresh replay gives the reference losses bit for bit, else where it first differs."""
        losses = self.losses()
        for index, (loss, reference) in enumerate(zip(losses, self.reference_losses, strict=True)):
            if loss != reference:
                return (
                    f"deterministic replay diverged at step {index + 1} of {len(losses)}: "
                    f"loss {loss:.9g}, was {reference:.9g} at prepare"
                )
        return None


class TrainStep(Workload):
    """One AdamW step of a GPT-style decoder per call; throughput in tokens/s (batch_size × seq_len per step).

    A NaN or Inf loss fails verification, is reported as a `nonfinite_loss` event, and training restarts from its
    initial weights, so that the load stays representative and a recurring fault is reported each time.
    With `deterministic`, every `replay_every_steps` steps verify() also replays the first steps from copies of the
    initial weights and optimizer state, under torch.use_deterministic_algorithms (enabled only during the replay),
    and requires the loss trajectory recorded at prepare() bit for bit. That holds on the CPU as is; accelerators
    need the deterministic kernels that switch selects, and CUDA also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 in the
    worker's environment (without it prepare() fails with torch's explanation).
    """

    name: ClassVar[str] = "train"
    unit: ClassVar[str] = "tokens/s"
    # Estimated, not measured, for the default model on an H200-class part: small enough to be launch-bound at a few
    # million tokens/s, drawing most of the board's power and holding a few GB (weights, AdamW state, activations).
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="tokens/s", peak_units_per_s=4_000_000.0, power_fraction=0.85, memory_fraction=0.02
    )
    reports_step_latency: ClassVar[bool] = True
    Params: ClassVar[type[WorkloadParams]] = TrainParams

    def prepare(self, device: torch.device) -> None:
        params = TrainParams.model_validate(self.spec.params)
        autocast = mixed_precision(self.name, self.spec.precision, device)
        scaling_device = self._loss_scaling_device(device) if self.spec.precision is Precision.FP16 else None

        def trainer() -> Trainer:
            return Trainer(
                Decoder(params, device),
                learning_rate=params.learning_rate,
                autocast=autocast,
                loss_scaling_device=scaling_device,
            )

        self._replay_every_steps = params.replay_every_steps
        self._batches = synthetic_tokens(
            vocab=params.vocab, batch_size=self.spec.batch_size, length=params.seq_len + 1, device=device
        )
        self._tokens_per_step = float(self.spec.batch_size * params.seq_len)
        self._trainer = trainer()
        self._initial_state = self._trainer.snapshot()
        self._replay = (
            DeterministicReplay(trainer(), self._initial_state, self._batches) if params.deterministic else None
        )
        self._steps = 0
        self._steps_at_replay = 0
        self._loss: torch.Tensor | None = None
        self._mismatch = ""

    def step(self) -> float:
        self._loss = self._trainer.step(self._batches[self._steps % BATCH_POOL])
        self._steps += 1
        return self._tokens_per_step

    def verify(self) -> bool:
        if self._loss is not None and not math.isfinite(loss := float(self._loss)):
            self._mismatch = f"the training loss is {loss} at step {self._steps}"
            self.emit("nonfinite_loss", "critical", f"{self._mismatch}; training restarts from its initial weights")
            self._trainer.restore(self._initial_state)
            self._loss = None
            return False
        if self._replay is not None and self._steps - self._steps_at_replay >= self._replay_every_steps:
            self._steps_at_replay = self._steps
            mismatch = self._replay.mismatch()
            if mismatch is not None:
                self._mismatch = mismatch
                return False
        return True

    def describe_mismatch(self) -> str:
        return self._mismatch

    def teardown(self) -> None:
        del self._batches, self._trainer, self._initial_state, self._replay, self._loss

    def _loss_scaling_device(self, device: torch.device) -> str | None:
        """The device type for fp16 loss scaling, or None (with an event) where the device lacks its kernels."""
        import torch

        ones = torch.ones(1, device=device)
        try:
            torch._amp_foreach_non_finite_check_and_unscale_([ones.clone()], torch.zeros(1, device=device), ones)
        except (NotImplementedError, RuntimeError) as error:
            self.emit(
                "unsupported_op",
                "warning",
                f"fp16 trains without loss scaling: {device.type} lacks the GradScaler kernels",
                raw=str(error),
            )
            return None
        return device.type

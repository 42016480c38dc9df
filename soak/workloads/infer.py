"""Inference: next-token logits of a small GPT-style decoder in eval mode, a probe batch checked bit for bit."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.transformer import BATCH_POOL, Decoder, DecoderParams, mixed_precision, synthetic_tokens

if TYPE_CHECKING:
    import torch


class Inference(Workload):
    """One forward pass over batch_size sequences per call, each a query for its next token; queries/s."""

    name: ClassVar[str] = "infer"
    unit: ClassVar[str] = "queries/s"
    # Estimated, not measured, for the default model on an H200-class part: forward passes alone draw less power
    # than training and hold little beyond the weights and one batch of activations.
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="queries/s", peak_units_per_s=200_000.0, power_fraction=0.6, memory_fraction=0.005
    )
    reports_step_latency: ClassVar[bool] = True
    Params: ClassVar[type[WorkloadParams]] = DecoderParams

    def prepare(self, device: torch.device) -> None:
        params = DecoderParams.model_validate(self.spec.params)
        self._autocast = mixed_precision(self.name, self.spec.precision, device)
        self._decoder = Decoder(params, device)
        self._decoder.module.eval()
        self._batches = synthetic_tokens(
            vocab=params.vocab, batch_size=self.spec.batch_size, length=params.seq_len, device=device
        )
        self._steps = 0
        # The probe is one of the batches the steps run, so its check goes through the kernels under load.
        self._reference = self._next_token_logits(self._batches[0])
        self._probe_logits = self._reference

    def step(self) -> float:
        self._next_token_logits(self._batches[self._steps % BATCH_POOL])
        self._steps += 1
        return float(self.spec.batch_size)

    def verify(self) -> bool:
        import torch

        # The same tokens through the same weights and kernels must give bit-identical logits; anything else is SDC.
        self._probe_logits = self._next_token_logits(self._batches[0])
        return bool(torch.equal(self._probe_logits, self._reference))

    def describe_mismatch(self) -> str:
        """How many probe logits differ from those computed at prepare, and the largest difference."""
        differs = self._probe_logits != self._reference
        delta = (self._probe_logits.double() - self._reference.double()).abs()
        return (
            f"{int(differs.sum())} of {differs.numel()} probe logits differ from those computed at prepare, "
            f"max |Δ| {float(delta.max()):.6g}"
        )

    def teardown(self) -> None:
        del self._decoder, self._batches, self._reference, self._probe_logits

    def _next_token_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode(), self._autocast():
            return self._decoder.logits(self._decoder.hidden_states(tokens)[:, -1])

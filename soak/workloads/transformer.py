"""A small GPT-style decoder, its synthetic token data and the mixed-precision setup that `train` and `infer` share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from soak.plan import Precision
from soak.workloads.base import WorkloadParams
from soak.workloads.precision import UnsupportedPrecision

if TYPE_CHECKING:
    import torch

MODEL_SEED = 1234
DATA_SEED = 4321
MLP_EXPANSION = 4
INIT_STD = 0.02
# Share of tokens that follow a fixed successor table; the rest are uniform noise, so the data can be learned
# (the loss falls) but never memorised to zero.
FOLLOW_PROBABILITY = 0.75
# Distinct batches a workload cycles through: enough that a step is not a replay of the last one, few enough to
# stay resident on the device so that no host transfer sits on the hot path.
BATCH_POOL = 8


class DecoderParams(WorkloadParams):
    """Shape of the decoder and its vocabulary."""

    d_model: int = Field(default=256, ge=8, le=16_384, description="width of the residual stream")
    layers: int = Field(default=2, ge=1, le=128, description="number of decoder blocks")
    heads: int = Field(default=4, ge=1, le=256, description="attention heads; must divide d_model")
    seq_len: int = Field(default=128, ge=2, le=65_536, description="tokens per sequence")
    vocab: int = Field(default=8192, ge=2, le=1_048_576, description="vocabulary size")

    @field_validator("heads")
    @classmethod
    def _heads_divide_d_model(cls, heads: int, info: ValidationInfo) -> int:
        d_model = info.data.get("d_model")
        if d_model is not None and d_model % heads:
            fitting = max(count for count in range(1, heads) if d_model % count == 0)
            raise ValueError(f"{heads} heads do not divide d_model {d_model} evenly; use a divisor such as {fitting}")
        return heads


class DecoderBlock:
    """Pre-norm block: x + causal self-attention(norm(x)), then x + GELU MLP(norm(x))."""

    def __init__(self, d_model: int, heads: int) -> None:
        import torch

        self.heads = heads
        self.attention_norm = torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.attention_out = torch.nn.Linear(d_model, d_model)
        self.mlp_norm = torch.nn.LayerNorm(d_model)
        self.mlp_in = torch.nn.Linear(d_model, MLP_EXPANSION * d_model)
        self.mlp_out = torch.nn.Linear(MLP_EXPANSION * d_model, d_model)
        self.module = torch.nn.ModuleDict(
            {
                "attention_norm": self.attention_norm,
                "qkv": self.qkv,
                "attention_out": self.attention_out,
                "mlp_norm": self.mlp_norm,
                "mlp_in": self.mlp_in,
                "mlp_out": self.mlp_out,
            }
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for hidden states of shape (batch, tokens, d_model)."""
        import torch

        batch, length, d_model = x.shape
        normed: torch.Tensor = self.attention_norm(x)
        qkv: torch.Tensor = self.qkv(normed)
        # (batch, tokens, 3, heads, head_dim) → three tensors of (batch, heads, tokens, head_dim)
        query, key, value = qkv.view(batch, length, 3, self.heads, d_model // self.heads).permute(2, 0, 3, 1, 4)
        attended = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)
        attention: torch.Tensor = self.attention_out(attended.transpose(1, 2).reshape(batch, length, d_model))
        x = x + attention
        expanded: torch.Tensor = self.mlp_in(self.mlp_norm(x))
        mlp: torch.Tensor = self.mlp_out(torch.nn.functional.gelu(expanded, approximate="tanh"))
        return x + mlp


class Decoder:
    """Token and learned position embeddings, pre-norm blocks, a final norm and an LM head tied to the embedding."""

    def __init__(self, params: DecoderParams, device: torch.device) -> None:
        import torch

        # Weights come from a fixed seed on the CPU, so every device starts from the same model, and the caller's
        # random stream is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(MODEL_SEED)
            self.token_embedding = torch.nn.Embedding(params.vocab, params.d_model)
            self.position_embedding = torch.nn.Embedding(params.seq_len, params.d_model)
            self.blocks = [DecoderBlock(params.d_model, params.heads) for _ in range(params.layers)]
            self.final_norm = torch.nn.LayerNorm(params.d_model)
            # Every parameter, for optimizers, state dicts and train/eval mode.
            self.module = torch.nn.ModuleDict(
                {
                    "token_embedding": self.token_embedding,
                    "position_embedding": self.position_embedding,
                    "blocks": torch.nn.ModuleList(block.module for block in self.blocks),
                    "final_norm": self.final_norm,
                }
            )
            _initialize(self.module, layers=params.layers)
        self.module.to(device)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden states, (batch, tokens, d_model), for token ids of shape (batch, tokens)."""
        import torch

        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x: torch.Tensor = self.token_embedding(tokens)
        x = x + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        normed: torch.Tensor = self.final_norm(x)
        return normed

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits for hidden states, through the LM head tied to the token embedding."""
        import torch

        return torch.nn.functional.linear(hidden, self.token_embedding.weight)


def _initialize(module: torch.nn.Module, *, layers: int) -> None:
    """GPT-2's initialisation: small normal weights, zero biases, residual projections scaled down by depth."""
    import torch

    for name, parameter in module.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(parameter)
        elif "norm" in name:
            torch.nn.init.ones_(parameter)
        elif name.endswith(("attention_out.weight", "mlp_out.weight")):
            # Each block adds two residual branches; scaling keeps the stream's variance flat with depth.
            torch.nn.init.normal_(parameter, std=INIT_STD / (2 * layers) ** 0.5)
        else:
            torch.nn.init.normal_(parameter, std=INIT_STD)


def synthetic_tokens(*, vocab: int, batch_size: int, length: int, device: torch.device) -> torch.Tensor:
    """BATCH_POOL batches of token ids, (BATCH_POOL, batch_size, length), the same for a given shape everywhere."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(DATA_SEED)
    successor = torch.randperm(vocab, generator=generator)
    rows = BATCH_POOL * batch_size
    noise = torch.randint(0, vocab, (rows, length), generator=generator)
    follows = torch.rand(rows, length, generator=generator) < FOLLOW_PROBABILITY
    tokens = noise.clone()
    for position in range(1, length):
        tokens[:, position] = torch.where(follows[:, position], successor[tokens[:, position - 1]], noise[:, position])
    return tokens.view(BATCH_POOL, batch_size, length).to(device)


def mixed_precision(
    workload: str, precision: Precision, device: torch.device
) -> Callable[[], AbstractContextManager[object]]:
    """Set the fp32 matmul mode for `precision` and return a factory of the autocast context its steps run under."""
    import torch

    autocast_dtypes = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}
    if precision not in autocast_dtypes and precision not in (Precision.FP32, Precision.TF32):
        raise UnsupportedPrecision(
            f"{workload} runs in fp32, tf32, bf16 or fp16 (bf16 and fp16 under autocast), not {precision.value}; "
            "set the workload's precision to one of those"
        )
    # tf32 is fp32 storage with reduced-precision tensor-core math; every other precision keeps exact fp32 math
    # for the matmuls that autocast leaves in fp32.
    torch.backends.cuda.matmul.allow_tf32 = precision is Precision.TF32
    if precision in autocast_dtypes:
        return functools.partial(torch.autocast, device.type, dtype=autocast_dtypes[precision])
    return nullcontext

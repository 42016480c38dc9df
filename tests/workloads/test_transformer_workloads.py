"""The transformer `train` and `infer` workloads on the CPU with real torch: they load, learn, and catch faults."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from soak.plan import PlanError, WorkloadSpec, parse_plan
from soak.workloads.backends import CpuDevice
from soak.workloads.base import IntervalResult, Workload
from soak.workloads.infer import Inference
from soak.workloads.precision import UnsupportedPrecision
from soak.workloads.registry import load_workload
from soak.workloads.train import TrainStep
from soak.workloads.transformer import BATCH_POOL

CPU = torch.device("cpu")
INTERVAL_S = 0.3
TINY = {"d_model": 32, "layers": 1, "heads": 2, "seq_len": 16, "vocab": 64}
BATCH_SIZE = 8


def spec(name: str, precision: str = "fp32", **params: Any) -> WorkloadSpec:
    """A tiny model, so that a CPU step takes milliseconds."""
    return WorkloadSpec.model_validate(
        {"name": name, "precision": precision, "batch_size": BATCH_SIZE, "params": {**TINY, **params}}
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the CPU backend runs its workers (and so the test leaves the machine usable)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(workload: Workload) -> IntervalResult:
    """One sample interval through the CPU backend, as a worker runs it."""
    return CpuDevice().run_interval(workload, end_s=time.time() + INTERVAL_S)


def train_losses(train: TrainStep, steps: int) -> list[float]:
    """The loss of each of the next `steps` training steps."""
    losses = []
    for _ in range(steps):
        train.step()
        assert train._loss is not None
        losses.append(float(train._loss))
    return losses


@pytest.mark.parametrize(("name", "unit"), [("train", "tokens/s"), ("infer", "queries/s")])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_transformer_workload_runs_an_interval_with_throughput_and_latencies(
    name: str, unit: str, precision: str
) -> None:
    device = CpuDevice()
    workload = load_workload(name)(spec(name, precision))
    device.prepare(workload)

    result = device.run_interval(workload, end_s=time.time() + INTERVAL_S)
    device.teardown(workload)

    assert workload.unit == unit
    assert result.steps > 0 and result.units_per_s > 0
    assert len(result.step_latencies_s) == result.steps
    assert all(latency_s > 0 for latency_s in result.step_latencies_s)
    assert (result.errors, result.sdc_mismatches, result.events) == ([], 0, [])


def test_a_training_step_counts_batch_size_times_seq_len_tokens() -> None:
    train = TrainStep(spec("train"))
    train.prepare(CPU)

    assert train.step() == BATCH_SIZE * TINY["seq_len"]


def test_training_lowers_the_loss() -> None:
    train = TrainStep(spec("train", learning_rate=1e-2))
    train.prepare(CPU)

    losses = train_losses(train, 32)

    # Each batch of the pool is seen four times; the last pass must beat the first.
    assert sum(losses[-BATCH_POOL:]) < sum(losses[:BATCH_POOL])


def test_a_nan_loss_is_a_critical_event_and_the_next_interval_trains_on() -> None:
    train = TrainStep(spec("train"))
    train.prepare(CPU)
    train.verify_every_steps = 1  # type: ignore[misc]
    with torch.no_grad():
        train._trainer.decoder.blocks[0].mlp_in.weight[0, 0] = math.nan

    poisoned = run(train)
    following = run(train)

    assert poisoned.errors == []
    assert poisoned.sdc_mismatches == 1
    assert [(event.kind, event.severity) for event in poisoned.events] == [("nonfinite_loss", "critical")]
    assert "the training loss is nan at step 1" in poisoned.events[0].message
    assert poisoned.sdc_details == ["the training loss is nan at step 1"]
    # Training restarted from its initial weights: the next interval runs clean.
    assert following.steps > 0
    assert (following.errors, following.sdc_mismatches, following.events) == ([], 0, [])


def test_an_infinite_loss_fails_verification() -> None:
    train = TrainStep(spec("train"))
    train.prepare(CPU)
    train.step()
    assert train.verify()

    train._loss = torch.tensor(math.inf)

    assert not train.verify()
    assert "the training loss is inf" in train.describe_mismatch()


def test_clean_deterministic_replays_pass_and_a_perturbed_weight_fails_at_its_step() -> None:
    train = TrainStep(spec("train", deterministic=True, replay_every_steps=1))
    train.prepare(CPU)
    train_losses(train, 3)
    assert train.verify()
    train_losses(train, 3)
    assert train.verify()

    with torch.no_grad():
        train._initial_state.model["final_norm.weight"][0] += 0.5
    train.step()

    assert not train.verify()
    assert train.describe_mismatch().startswith(f"deterministic replay diverged at step 1 of {BATCH_POOL}: loss ")


def test_replays_leave_the_training_they_check_unchanged() -> None:
    plain = TrainStep(spec("train"))
    plain.prepare(CPU)
    checked = TrainStep(spec("train", deterministic=True, replay_every_steps=1))
    checked.prepare(CPU)

    checked_losses = []
    for _ in range(4):
        checked_losses += train_losses(checked, 3)
        assert checked.verify()

    assert checked_losses == train_losses(plain, 12)


def test_inference_reproduces_its_probe_and_catches_a_corrupted_weight() -> None:
    infer = Inference(spec("infer"))
    infer.prepare(CPU)
    for _ in range(3):
        infer.step()
        assert infer.verify()

    with torch.no_grad():
        infer._decoder.blocks[0].qkv.weight[1, 2] += 0.5

    assert not infer.verify()
    assert "max |Δ|" in infer.describe_mismatch()


@pytest.mark.parametrize("name", ["train", "infer"])
@pytest.mark.parametrize("precision", ["int8", "fp8", "fp64"])
def test_an_unsupported_precision_is_refused_at_prepare(name: str, precision: str) -> None:
    workload = load_workload(name)(spec(name, precision))

    with pytest.raises(UnsupportedPrecision, match=f"{name} runs in fp32, tf32, bf16 or fp16 .*not {precision}"):
        workload.prepare(CPU)


@pytest.mark.parametrize(
    ("name", "params", "problem"),
    [
        ("train", {"d_model": 30, "heads": 4}, "workloads[0].params.heads: 4 heads do not divide d_model 30 evenly"),
        ("infer", {"d_model": 32, "heads": 3}, "workloads[0].params.heads: 3 heads do not divide d_model 32 evenly"),
        ("infer", {"learning_rate": 0.1}, "workloads[0].params.learning_rate: unknown field"),
        ("train", {"seq_len": 1}, "workloads[0].params.seq_len: Input should be greater than or equal to 2"),
    ],
)
def test_bad_params_are_reported_on_their_field(name: str, params: dict[str, Any], problem: str) -> None:
    plan = {
        "name": "bad params",
        "duration": "1h",
        "devices": [{"vendor": "cpu"}],
        "workloads": [{"name": name, "params": params}],
    }

    with pytest.raises(PlanError) as raised:
        parse_plan(plan)

    assert any(line.startswith(problem) for line in raised.value.problems), raised.value.problems

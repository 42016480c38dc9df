"""allreduce and scaling with gloo on two CPU processes, meeting through a TCP store as in a campaign."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta
from typing import Any

import pytest
import torch.distributed as dist

from soak.plan import PlanError, WorkloadSpec, parse_plan
from soak.workloads.backends import CpuDevice
from soak.workloads.collective import CollectiveGroup, CollectiveWorkload
from soak.workloads.registry import load_workload
from soak.workloads.scaling import group_sizes

INTERVAL_S = 1.5
CORRUPT_FROM = 12_345


def _member(workload: dict[str, Any], group: CollectiveGroup, intervals: int, corrupt: bool, results: Any) -> None:
    """One member: open the CPU, join, run intervals while the group agrees, and send back what it measured."""
    device = CpuDevice()
    instance = load_workload(workload["name"])(WorkloadSpec.model_validate(workload))
    assert isinstance(instance, CollectiveWorkload)
    instance.group = group
    outcome: dict[str, Any] = {"rank": group.rank, "intervals": []}
    try:
        device.prepare(instance)
        if corrupt:  # one bit of this rank's contribution flips, as a failing link or HBM cell would
            pattern = instance._pattern  # type: ignore[attr-defined]
            index = int(pattern[CORRUPT_FROM:].nonzero()[0]) + CORRUPT_FROM
            bits = pattern.view(instance._bits_dtype)  # type: ignore[attr-defined]
            bits[index] ^= 1 << (22 if pattern.element_size() == 4 else 6)  # the top mantissa bit: ±1 becomes ±1.5
            outcome["corrupted"] = index
        done = 0
        while instance.continue_segment(done < intervals):
            result = device.run_interval(instance, end_s=time.time() + INTERVAL_S)
            outcome["intervals"].append(
                {
                    "units_per_s": result.units_per_s,
                    "steps": result.steps,
                    "sdc": result.sdc_mismatches,
                    "details": result.sdc_details,
                    "errors": result.errors,
                    "metrics": result.metrics,
                }
            )
            done += 1
    except Exception as error:
        outcome["error"] = f"{type(error).__name__}: {error}"
    finally:
        device.teardown(instance)
    results.put(outcome)


def run_group(
    workload: dict[str, Any], *, world_size: int = 2, intervals: int = 2, corrupt_rank: int | None = None
) -> list[dict[str, Any]]:
    """Run `workload` on `world_size` CPU processes; each member's outcome, by rank."""
    context = multiprocessing.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, None, True, timedelta(seconds=60), wait_for_workers=False)
    results = context.Queue()
    members = [
        context.Process(
            target=_member,
            args=(
                workload,
                CollectiveGroup("127.0.0.1", store.port, "test/", rank, world_size, gloo_interface="lo"),
                intervals,
                rank == corrupt_rank,
                results,
            ),
        )
        for rank in range(world_size)
    ]
    for member in members:
        member.start()
    outcomes = [results.get(timeout=120) for _ in members]
    for member in members:
        member.join(timeout=30)
    return sorted(outcomes, key=lambda outcome: outcome["rank"])


def test_allreduce_reports_bus_bandwidth_and_checks_every_sum() -> None:
    outcomes = run_group({"name": "allreduce", "params": {"buffer_mib": 4, "sync_every_steps": 2}})
    for outcome in outcomes:
        assert "error" not in outcome, outcome
        assert len(outcome["intervals"]) == 2
        for interval in outcome["intervals"]:
            assert interval["errors"] == []
            assert interval["units_per_s"] > 0.01  # GB/s of bus bandwidth over loopback
            assert interval["sdc"] == 0
    # The members stop together, so they ran the same number of reductions.
    assert [i["steps"] for i in outcomes[0]["intervals"]] == [i["steps"] for i in outcomes[1]["intervals"]]
    assert sum(i["steps"] for i in outcomes[0]["intervals"]) >= 16  # enough for at least one checked reduction


def test_allreduce_catches_a_bit_flipped_in_one_members_data() -> None:
    outcomes = run_group(
        {"name": "allreduce", "params": {"buffer_mib": 4, "sync_every_steps": 2}}, intervals=1, corrupt_rank=1
    )
    index = outcomes[1]["corrupted"]
    for outcome in outcomes:  # the wrong sum reaches every member, and every member notices
        interval = outcome["intervals"][0]
        assert interval["sdc"] >= 1
        assert interval["details"][0].startswith("1 of ") and f"element {index} is" in interval["details"][0]


def test_scaling_reports_efficiency_of_two_members_against_one() -> None:
    outcomes = run_group(
        {
            "name": "scaling",
            "batch_size": 2,
            "params": {"d_model": 32, "layers": 1, "heads": 2, "seq_len": 16, "vocab": 64, "steps_per_phase": 2},
        }
    )
    for outcome in outcomes:
        assert "error" not in outcome, outcome
        assert all(interval["units_per_s"] > 0 for interval in outcome["intervals"])
    efficiency = [interval["metrics"]["efficiency.n2_ratio"] for interval in outcomes[0]["intervals"]]
    assert all(0.05 < value < 2.0 for value in efficiency), efficiency
    assert all(interval["metrics"] == {} for interval in outcomes[1]["intervals"])  # rank 0 speaks for the group


def test_a_group_of_one_is_refused_with_the_fix() -> None:
    outcomes = run_group({"name": "allreduce", "params": {"buffer_mib": 1}}, world_size=1, intervals=1)
    assert "needs at least 2 devices" in outcomes[0]["error"]


@pytest.mark.parametrize(("world_size", "sizes"), [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])])
def test_group_sizes_double_up_to_the_world(world_size: int, sizes: list[int]) -> None:
    assert group_sizes(world_size) == sizes


def test_a_bad_scope_is_refused_naming_the_field_and_the_choices() -> None:
    plan = {
        "name": "bad-scope",
        "duration": "1h",
        "devices": {"simulated": 2},
        "workloads": [{"name": "gemm"}, {"name": "allreduce", "params": {"scope": "cluster"}}],
    }
    with pytest.raises(PlanError) as raised:
        parse_plan(plan)
    assert raised.value.problems == ["workloads[1].params.scope: Input should be 'node' or 'campaign'"]

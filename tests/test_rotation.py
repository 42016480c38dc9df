"""The workload mix: slots shared out by weight, and devices running different workloads at the same time."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

import pytest

from soak.plan import Precision, WorkloadSpec
from soak.scheduler.rotation import Rotation, series_labels, weighted_order


def mix(*weights: float) -> list[WorkloadSpec]:
    """One GEMM entry per weight, told apart by matrix size."""
    return [
        WorkloadSpec(name="gemm", weight=weight, params={"size": 128 * (position + 1)})
        for position, weight in enumerate(weights)
    ]


@pytest.mark.parametrize("weights", [(1.0,), (1, 1), (3, 1), (5, 1, 1), (2, 2, 1), (0.5, 1), (1, 2, 3, 4)])
def test_each_workload_gets_slots_in_proportion_to_its_weight(weights: tuple[float, ...]) -> None:
    order = weighted_order(mix(*weights))

    counts = Counter(order)
    assert sorted(counts) == list(range(len(weights)))
    for index, weight in enumerate(weights):
        assert counts[index] / len(order) == pytest.approx(weight / sum(weights))


@pytest.mark.parametrize(
    ("weights", "slots", "expected"),
    [((3, 1), 12, [9, 3]), ((1, 0.3), 130, [100, 30]), ((0.7, 0.2, 0.1), 100, [70, 20, 10])],
)
def test_a_given_number_of_slots_is_shared_by_weight(
    weights: tuple[float, ...], slots: int, expected: list[int]
) -> None:
    order = weighted_order(mix(*weights), slots=slots)

    assert len(order) == slots
    assert [Counter(order)[index] for index in range(len(weights))] == expected


def test_the_heavy_workload_is_interleaved_not_run_back_to_back() -> None:
    order = weighted_order(mix(5, 1, 1))

    longest_run = max(len(list(run)) for _, run in groupby(order))
    assert longest_run <= 2, order


def test_a_light_workload_still_gets_a_slot() -> None:
    order = weighted_order(mix(100, 1))

    assert 1 in order
    assert len(order) <= 64


def test_slots_are_numbered_from_the_start() -> None:
    rotation = Rotation(mix(1, 1), rotation_s=300.0, start_s=1000.0)

    assert [rotation.slot_at(t) for t in (900.0, 1000.0, 1299.9, 1300.0, 1000.0 + 7 * 300 + 1)] == [0, 0, 0, 1, 7]
    assert rotation.slot_end_s(0) == 1300.0
    assert rotation.slot_end_s(rotation.slot_at(2345.0)) == 2500.0


def test_two_devices_run_different_workloads_in_every_slot() -> None:
    workloads = mix(1, 1)
    rotation = Rotation(workloads, rotation_s=60.0, start_s=0.0)

    for slot in range(10):
        first = rotation.workload(slot=slot, device_position=0)
        second = rotation.workload(slot=slot, device_position=1)
        assert first != second, slot


def test_devices_at_one_slot_share_the_mix_by_weight() -> None:
    workloads = mix(3, 1)
    rotation = Rotation(workloads, rotation_s=60.0, start_s=0.0)

    for slot in range(8):
        running = Counter(workloads.index(rotation.workload(slot=slot, device_position=device)) for device in range(4))
        assert running == {0: 3, 1: 1}, slot


def test_each_device_goes_through_the_whole_mix_in_turn() -> None:
    workloads = mix(5, 1, 1)
    rotation = Rotation(workloads, rotation_s=60.0, start_s=0.0)

    for device in range(9):
        ran = Counter(workloads.index(rotation.workload(slot=slot, device_position=device)) for slot in range(7))
        assert ran == {0: 5, 1: 1, 2: 1}, device


def test_a_single_workload_runs_everywhere() -> None:
    workloads = mix(2)
    rotation = Rotation(workloads, rotation_s=60.0, start_s=0.0)

    assert all(rotation.workload(slot=s, device_position=d) is workloads[0] for s in range(3) for d in range(3))


def test_entries_sharing_a_workload_report_distinct_series() -> None:
    def entry(name: str, precision: str) -> WorkloadSpec:
        return WorkloadSpec(name=name, precision=Precision(precision))

    plan = [
        entry("gemm", "bf16"),
        entry("gemm", "fp8"),
        entry("train", "bf16"),
        entry("membw", "fp32"),
        entry("membw", "fp32"),
    ]
    assert series_labels(plan) == ["gemm_bf16", "gemm_fp8", "train", "membw_3", "membw_4"]

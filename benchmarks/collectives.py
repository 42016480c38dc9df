"""allreduce bus bandwidth and scaling efficiency on N local CPU processes (gloo over loopback).

    python benchmarks/collectives.py [--members 2] [--seconds 10] [--buffer-mib 16]

Each member is a process driving the CPU the way a worker does; they meet at a TCP store as a campaign's slot
does. Prints the bus bandwidth each member measured and rank 0's scaling efficiency. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import time
from datetime import timedelta
from typing import Any

import psutil
import torch.distributed as dist

from soak.plan import WorkloadSpec
from soak.workloads.backends import CpuDevice
from soak.workloads.collective import CollectiveGroup, CollectiveWorkload
from soak.workloads.registry import load_workload

INTERVAL_S = 2.0


def member(workload: dict[str, Any], group: CollectiveGroup, seconds: float, results: Any) -> None:
    """Run `workload` for `seconds` as one member and send back (units/s, metrics) per interval."""
    device = CpuDevice()
    instance = load_workload(workload["name"])(WorkloadSpec.model_validate(workload))
    assert isinstance(instance, CollectiveWorkload)
    instance.group = group
    device.prepare(instance)
    end_s = time.time() + seconds
    intervals = []
    while instance.continue_segment(time.time() < end_s):
        result = device.run_interval(instance, end_s=time.time() + INTERVAL_S)
        intervals.append((result.units_per_s, result.metrics, result.sdc_mismatches, result.errors))
    device.teardown(instance)
    results.put((group.rank, intervals))


def run(workload: dict[str, Any], members: int, seconds: float) -> dict[int, list[Any]]:
    context = multiprocessing.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, None, True, timedelta(seconds=60), wait_for_workers=False)  # type: ignore[attr-defined]
    results = context.Queue()
    processes = [
        context.Process(
            target=member,
            args=(workload, CollectiveGroup("127.0.0.1", store.port, "bench/", rank, members, "lo"), seconds, results),
        )
        for rank in range(members)
    ]
    for process in processes:
        process.start()
    outcome = dict(results.get(timeout=seconds + 300) for _ in processes)
    for process in processes:
        process.join()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--buffer-mib", type=int, default=16)
    args = parser.parse_args()
    print(f"# {args.members} CPU members on {platform.node()} ({psutil.cpu_count()} CPUs), gloo over loopback")
    allreduce = run({"name": "allreduce", "params": {"buffer_mib": args.buffer_mib}}, args.members, args.seconds)
    for rank, intervals in sorted(allreduce.items()):
        rates = [rate for rate, _, _, _ in intervals[1:]] or [intervals[0][0]]  # the first interval warms up
        checks_failed = sum(sdc for _, _, sdc, _ in intervals)
        print(
            f"allreduce {args.buffer_mib} MiB, rank {rank}: bus bandwidth median {statistics.median(rates):.2f} GB/s "
            f"over {len(rates)} intervals; wrong sums: {checks_failed}"
        )
    model = {"d_model": 128, "layers": 2, "heads": 4, "seq_len": 64, "vocab": 2048, "steps_per_phase": 2}
    scaling = run({"name": "scaling", "batch_size": 4, "params": model}, args.members, args.seconds)
    efficiencies: dict[str, list[float]] = {}
    for _, metrics, _, _ in scaling[0]:
        for key, value in metrics.items():
            efficiencies.setdefault(key, []).append(value)
    for key, values in sorted(efficiencies.items()):
        print(f"scaling {key}: median {statistics.median(values):.3f} over {len(values)} intervals")
    rates = [rate for rate, _, _, _ in scaling[0]]
    print(f"scaling throughput at {args.members} members: median {statistics.median(rates):,.0f} tokens/s")


if __name__ == "__main__":
    main()

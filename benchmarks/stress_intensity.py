"""How hard soak's load pushes a device, against the best plain torch reference on the same device.

    python benchmarks/stress_intensity.py [--family cpu|cuda|...] [--index 0] [--precision fp32|bf16|...]
                                          [--window-s 5] [--sustain-s 60]

Burst: each measured from a rested device. Sustained: after --sustain-s of continuous GEMM load, when power and
thermal limits have had time to bite, reference and soak windows alternate. Both sides are timed by the same
device clock (events on an accelerator, the worker thread's CPU time on the CPU, where torch uses one thread).
Prints the figures and soak/reference ratios (target ≥ 0.90). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from soak.plan import Precision, WorkloadSpec
from soak.workloads.backends import CpuDevice, TorchDevice
from soak.workloads.families import DeviceFamily, family
from soak.workloads.gemm import ACCELERATOR_SIZE, CPU_SIZE, Gemm
from soak.workloads.membw import MemoryBandwidth
from soak.workloads.precision import torch_dtype

TARGET_RATIO = 0.90
REST_S = 10.0


def timed_rate(work: Callable[[], float], accelerator: DeviceFamily, index: int, window_s: float) -> float:
    """Units per second of device time, repeating `work` (which returns its units) for about window_s."""
    timer = accelerator.timer(index)
    units = 0.0
    timer.start()
    deadline_s = time.time() + window_s
    while time.time() < deadline_s:
        units += work()
    accelerator.synchronize(index)
    return units / timer.stop()


def reference_gemm(device: torch.device, size: int, precision: Precision) -> Callable[[], float]:
    """A plain torch.matmul into a preallocated output: the fastest simple GEMM loop torch offers."""
    dtype = torch_dtype(precision)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    gflop = 2.0 * size**3 / 1e9

    def work() -> float:
        torch.matmul(a, b, out=c)
        return gflop

    return work


def reference_copy(device: torch.device, buffer_mib: int) -> Callable[[], float]:
    """A device-to-device copy; GB moved counts the read and the write."""
    source = torch.ones(buffer_mib * 2**20 // 4, device=device)
    target = torch.empty_like(source)
    gigabytes = 2.0 * source.numel() * source.element_size() / 1e9

    def work() -> float:
        target.copy_(source)
        return gigabytes

    return work


def soak_rate(opened: TorchDevice, workload: Gemm | MemoryBandwidth, window_s: float) -> float:
    """soak's own interval loop (steps, periodic verification, device timing) for one window."""
    return opened.run_interval(workload, end_s=time.time() + window_s).units_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cpu")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--precision", default=None, help="default: fp32 on the CPU, bf16 on accelerators")
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--sustain-s", type=float, default=60.0)
    parser.add_argument("--buffer-mib", type=int, default=None, help="default: 64 on the CPU, 1024 elsewhere")
    args = parser.parse_args()

    accelerator = family(args.family)
    on_cpu = accelerator.name == "cpu"
    opened = CpuDevice() if on_cpu else TorchDevice(accelerator, args.index)
    device = torch.device(accelerator.torch_device_type, args.index)
    precision = Precision(args.precision or ("fp32" if on_cpu else "bf16"))
    size = CPU_SIZE if on_cpu else ACCELERATOR_SIZE
    buffer_mib = args.buffer_mib or (64 if on_cpu else 1024)
    described = accelerator.describe(args.index)
    print(
        f"{time.strftime('%Y-%m-%d')} · {platform.node()} · {described.get('model')} ({described.get('stack')}) · "
        f"torch {torch.__version__} · {precision.value} GEMM n={size} · copy buffer {buffer_mib} MiB"
    )

    gemm = Gemm(WorkloadSpec(name="gemm", precision=precision, params={"size": size}))
    membw = MemoryBandwidth(WorkloadSpec(name="membw", params={"buffer_mib": buffer_mib}))
    opened.prepare(gemm)
    opened.prepare(membw)
    ref_gemm = reference_gemm(device, size, precision)
    ref_copy = reference_copy(device, buffer_mib)

    rows: list[tuple[str, str, float, float]] = []
    window_s = args.window_s
    time.sleep(REST_S)
    rows.append(
        (
            "gemm GFLOP/s",
            "burst",
            timed_rate(ref_gemm, accelerator, args.index, window_s),
            _after_rest(lambda: soak_rate(opened, gemm, window_s)),
        )
    )
    time.sleep(REST_S)
    rows.append(
        (
            "membw GB/s",
            "burst",
            timed_rate(ref_copy, accelerator, args.index, window_s),
            _after_rest(lambda: soak_rate(opened, membw, window_s)),
        )
    )

    load_until_s = time.time() + args.sustain_s
    while time.time() < load_until_s:
        soak_rate(opened, gemm, min(window_s, load_until_s - time.time()))
    for name, reference, workload in (("gemm GFLOP/s", ref_gemm, gemm), ("membw GB/s", ref_copy, membw)):
        pairs = [
            (timed_rate(reference, accelerator, args.index, window_s), soak_rate(opened, workload, window_s))
            for _ in range(3)
        ]
        rows.append((name, "sustained", statistics.median(r for r, _ in pairs), statistics.median(s for _, s in pairs)))

    print(f"| workload | phase | reference | soak | soak/reference (target ≥ {TARGET_RATIO:.2f}) |")
    print("|---|---|---|---|---|")
    for name, phase, reference_rate, soak_value in rows:
        print(f"| {name} | {phase} | {reference_rate:,.1f} | {soak_value:,.1f} | {soak_value / reference_rate:.3f} |")


def _after_rest(measure: Callable[[], float]) -> float:
    time.sleep(REST_S)
    return measure()


if __name__ == "__main__":
    main()

"""What the node agent costs: CPU per device-sample of each collector, and agent memory over a compressed long run.

    python benchmarks/agent_overhead.py [--devices 8] [--reads 2000] [--cycles 20000] [--real-nvml]

Part 1 reads each collector `--reads` times and prints CPU time per device-sample and the share of one core that
1 Hz sampling of `--devices` devices costs. NVML answers from the recorded H200 (copied to `--devices` GPUs)
unless `--real-nvml` reads the machine's GPUs, so without it the figure is soak's own cost, not the driver's.
Part 2 runs the whole agent loop — recorded NVML, host collector, a worker report per device per cycle, the spool,
delivery to a real controller (`soak serve` in a child process, SQLite) — for `--cycles` cycles back to back, each
standing for one second at 1 Hz, and prints CPU per cycle and RSS growth per simulated day. Measures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from agents.agent import Agent
from agents.collectors.base import CollectContext, Collector
from agents.collectors.host import HostCollector
from agents.collectors.npu_smi import NpuSmiCollector
from agents.collectors.nvml import NvmlCollector
from agents.config import AgentSettings
from agents.inbox import WorkerReport, write_report
from agents.nvml.provider import Nvml
from agents.nvml.recorded import RecordedNvml, load_recorded_readings
from soak.embedded import free_port

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
TOKEN = "agent-overhead-token-0123456789abcdef0123"
SECONDS_PER_DAY = 86_400


def recorded_gpus(count: int) -> RecordedNvml:
    """`count` GPUs answering as the recorded H200, each with its own uuid and bus id."""
    reading = load_recorded_readings(FIXTURES / "nvidia-h200")
    return RecordedNvml(
        [
            {
                **reading,
                "uuid": f"GPU-0bae265c-555b-5a0c-03c7-8551e62ae4{index:02x}",
                "pci_bus_id": f"00000000:{index + 6:02X}:00.0",
            }
            for index in range(count)
        ]
    )


def cpu_per_read(collector: Collector, reads: int) -> float:
    """CPU seconds one collect() takes, over `reads` reads after a warm-up read."""
    context = CollectContext(worker_pids={"bench/cuda0": os.getpid()})
    collector.collect(time.time(), context)
    started = time.process_time()
    for _ in range(reads):
        collector.collect(time.time(), context)
    return (time.process_time() - started) / reads


def part_one(settings: AgentSettings, *, devices: int, reads: int, real_nvml: bool) -> None:
    provider: Nvml | None = None if real_nvml else recorded_gpus(devices)
    nvml = NvmlCollector(settings, provider)
    npu_answers = {("npu-smi", "info"): (FIXTURES / "smi" / "npu_smi" / "info_910b3_23.0.7.txt").read_text()}
    npu = NpuSmiCollector(settings, run=lambda argv: npu_answers.get(tuple(argv)))
    print("| collector | devices | CPU per read | CPU per device-sample | 1 Hz, share of one core |")
    print("|---|---:|---:|---:|---:|")
    try:
        for label, collector, count in (
            ("nvml (real)" if real_nvml else "nvml (recorded H200)", nvml, len(nvml.devices())),
            ("npu_smi (parsing recorded output)", npu, len(npu.devices())),
            ("host (psutil, one worker process)", HostCollector(settings), 1),
        ):
            if count == 0:
                print(f"| {label} | 0 | – | – | – |")
                continue
            seconds = cpu_per_read(collector, reads)
            print(
                f"| {label} | {count} | {seconds * 1e3:.3f} ms | {seconds / count * 1e6:.0f} µs | "
                f"{seconds * 100:.3f} % |"
            )
    finally:
        nvml.close()


def start_controller(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`soak serve` on a free loopback port with its own SQLite store; waits until it answers."""
    port = free_port()
    env = {
        **os.environ,
        "SOAK_DATABASE_URL": f"sqlite:///{directory / 'soak.db'}",
        "SOAK_API_TOKEN": TOKEN,
        "SOAK_PORT": str(port),
        "SOAK_EXECUTOR": "local",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "soak"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline_s = time.time() + 60
    while time.time() < deadline_s:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the controller did not start within 60 s")


def worker_reports(inbox: Path, devices: int, now_s: float) -> None:
    """What `devices` workers report in one interval: throughput, latency and busy ratios."""
    for index in range(devices):
        device = f"bench/cuda{index}"
        samples: list[dict[str, Any]] = [
            {"time_s": now_s, "device": device, "metric": metric, "value": value}
            for metric, value in (
                ("throughput.gemm", 610_000.0 + index),
                ("latency.gemm.p50_ms", 11.0),
                ("latency.gemm.p99_ms", 12.5),
                ("worker.busy_ratio", 1.0),
                ("worker.device_time_ratio", 0.99),
            )
        ]
        write_report(inbox, WorkerReport(campaign_id=None, device=device, pid=os.getpid(), samples=samples))


def part_two(directory: Path, *, devices: int, cycles: int) -> None:
    process, url = start_controller(directory)
    settings = AgentSettings(
        controller_url=url, api_token=TOKEN, node_name="bench", cpu_device=False, data_dir=directory / "node"
    )
    settings.inbox_dir.mkdir(parents=True, exist_ok=True)
    agent = Agent(settings, collectors=[NvmlCollector(settings, recorded_gpus(devices)), HostCollector(settings)])
    me = psutil.Process()
    start_s = time.time()
    rss: list[tuple[int, float]] = []
    cpu_s = 0.0
    try:
        for cycle in range(cycles):
            now_s = start_s + cycle
            worker_reports(settings.inbox_dir, devices, now_s)
            started = time.thread_time()
            agent.cycle(now_s)
            cpu_s += time.thread_time() - started
            if cycle % 500 == 0:
                rss.append((cycle, me.memory_info().rss / 1e6))
        depth = agent.spool.stats().batches
    finally:
        agent.close()
        process.terminate()
        process.wait(timeout=30)
    later = [(cycle, mb) for cycle, mb in rss if cycle >= cycles // 4]  # after imports, caches and the first spool
    slope_mb_per_cycle = (
        float(np.polyfit([c for c, _ in later], [m for _, m in later], 1)[0]) if len(later) > 2 else 0.0
    )
    print()
    print(f"agent loop: {cycles} cycles ({cycles / 3600:.1f} simulated hours at 1 Hz), {devices} GPUs + host + reports")
    print(f"  CPU per cycle (agent thread: collect, spool, deliver): {cpu_s / cycles * 1e3:.2f} ms")
    print(f"  = {cpu_s / cycles * 100:.2f} % of one core at 1 Hz")
    print(f"  RSS: {rss[0][1]:.1f} MB at start, {rss[-1][1]:.1f} MB at the end")
    print(f"  RSS growth after the first quarter: {slope_mb_per_cycle * SECONDS_PER_DAY:.2f} MB per simulated day")
    print(f"  batches left in the spool: {depth}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--real-nvml", action="store_true", help="read this machine's GPUs through pynvml")
    args = parser.parse_args()
    print(f"# agent overhead on {platform.node()}: {psutil.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        settings = AgentSettings(node_name="bench", cpu_device=False, data_dir=directory / "part1")
        part_one(settings, devices=args.devices, reads=args.reads, real_nvml=args.real_nvml)
        part_two(directory, devices=args.devices, cycles=args.cycles)


if __name__ == "__main__":
    main()

"""A simulated fleet against one controller on Postgres: sustained ingest, controller CPU and memory, read latency.

    python benchmarks/fleet_scale.py [--nodes 100] [--processes 2] [--duration-s 60] [--reads-per-s 200]
                                     [--push-every-s 1]

Creates a fresh schema in the database `test` on 127.0.0.1:5432 and registers the nodes, each with 8 devices.
The controller is served by uvicorn in a process of its own (no scheduler). Agent processes each simulate a share
of the nodes as asyncio tasks: every second each node collects one batch (8 devices x 25 metrics) for one running
campaign; every --push-every-s seconds (each node at its own phase) it sends what it holds, one batch alone to
POST /api/v1/telemetry, several (up to 100) in one request to POST /api/v1/telemetry/batches, as the agent does;
a batch that fails is sent again with the same id, as the agent's spool does. Meanwhile this
process sends GET requests to the read API (campaigns, that campaign's progress, findings and events, nodes; with
--inventory the 800-device list too) at a fixed rate, open loop, and times each. Prints
the ingest rate, the backlog left when the load stops, the controller's CPU (cores) and resident memory, read
latency percentiles, and lost = produced - stored (counted in the database). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import statistics
import time
import uuid
from typing import Any

import aiohttp
import httpx
import psutil
from ingest import DEVICES_PER_NODE, METRICS, TOKEN, controller, register, stored_samples
from postgres_schema import fresh_schema

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
# What the CLI and an on-call engineer poll; the fleet inventory (/api/v1/devices, 800 devices) only with --inventory.
READ_PATHS = (
    "/api/v1/campaigns",
    "/api/v1/campaigns/{campaign}",
    "/api/v1/campaigns/{campaign}/findings",
    "/api/v1/campaigns/{campaign}/events",
    "/api/v1/nodes",
)
INVENTORY_PATH = "/api/v1/devices"
MAX_BATCHES_PER_PUSH = 100  # the agent's push_max_batches
REQUEST_TIMEOUT_S = 10.0  # a read or push slower than this counts as failed (a push is retried)


def node_batch(node: str, campaign_id: int, time_s: float) -> tuple[str, bytes, int]:
    """One second of a node's telemetry: its id, its body, its sample count."""
    samples = [
        {"time_s": time_s, "device": f"{node}/cuda{device}", "metric": metric, "value": (device * 31 + i) % 97 + 0.5}
        for device in range(DEVICES_PER_NODE)
        for i, metric in enumerate(METRICS)
    ]
    batch_id = str(uuid.uuid4())
    body = json.dumps({"batch_id": batch_id, "node": node, "campaign_id": campaign_id, "samples": samples}).encode()
    return batch_id, body, len(samples)


async def push(client: aiohttp.ClientSession, bodies: list[bytes]) -> bool:
    """Send batches in one request; True when the controller answered for every one of them."""
    if len(bodies) == 1:
        path, body = "/api/v1/telemetry", bodies[0]
    else:
        path, body = "/api/v1/telemetry/batches", b'{"batches":[' + b",".join(bodies) + b"]}"
    try:
        async with client.post(path, data=body) as response:
            answer = await response.read()
            if response.status != 200:
                return False
    except (aiohttp.ClientError, TimeoutError):
        return False
    if len(bodies) == 1:
        return True
    results = json.loads(answer)["results"]
    return len(results) == len(bodies) and not any(result["refused"] for result in results)


async def simulate_node(
    client: aiohttp.ClientSession,
    node: str,
    campaign_id: int,
    stop_s: float,
    push_every_s: float,
    tally: dict[str, int],
) -> None:
    """Collect a batch each second until stop_s, however delivery goes; push every push_every_s, oldest first,
    retrying with the same ids."""
    backlog: list[tuple[str, bytes, int]] = []
    next_s = time.time()
    # Agents start at different moments, so their pushes spread over the interval.
    next_push_s = next_s + random.uniform(0.0, push_every_s)
    while (now_s := time.time()) < stop_s:
        while next_s <= now_s:
            backlog.append(node_batch(node, campaign_id, next_s))
            tally["produced"] += backlog[-1][2]
            next_s += 1.0
        if now_s >= next_push_s:
            while backlog:
                chunk = backlog[:MAX_BATCHES_PER_PUSH]
                if not await push(client, [body for _, body, _ in chunk]):
                    tally["failures"] += 1
                    break
                del backlog[: len(chunk)]
                tally["acknowledged"] += sum(samples for _, _, samples in chunk)
                tally["requests"] += 1
                if time.time() >= next_s:
                    break
            else:
                next_push_s += push_every_s * math.ceil((time.time() - next_push_s) / push_every_s + 1e-9)
        await asyncio.sleep(max(0.0, min(next_s, next_push_s) - time.time()))
    tally["backlog"] += sum(samples for _, _, samples in backlog)


def client_session(base_url: str, *, connections: int) -> aiohttp.ClientSession:
    """A keep-alive HTTP client (httpx's async pool spends more CPU than the controller at a few hundred requests/s)."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers=HEADERS,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


def agent_process(
    base_url: str, nodes: list[str], campaign_id: int, stop_s: float, push_every_s: float, results: Any
) -> None:
    """Many nodes' agents as tasks of one event loop."""

    async def main() -> dict[str, int]:
        tally = {"produced": 0, "acknowledged": 0, "failures": 0, "backlog": 0, "requests": 0}
        async with client_session(base_url, connections=len(nodes)) as client:
            await asyncio.gather(
                *(simulate_node(client, node, campaign_id, stop_s, push_every_s, tally) for node in nodes)
            )
        return tally

    results.put(asyncio.run(main()))


async def read_load(
    base_url: str, paths: list[str], campaign_id: int, rate_per_s: float, start_s: float, stop_s: float
) -> dict[str, list[float]]:
    """GETs at a fixed rate (open loop: a slow answer does not delay the next request); latencies in ms by path."""
    latencies_ms: dict[str, list[float]] = {path: [] for path in paths}
    errors = 0

    async def one(client: aiohttp.ClientSession, template: str) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            async with client.get(template.format(campaign=campaign_id)) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
            return
        latencies_ms[template].append((time.perf_counter() - started) * 1000.0)

    async with client_session(base_url, connections=256) as client:
        tasks = []
        number = 0
        await asyncio.sleep(max(0.0, start_s - time.time()))
        while (due_s := start_s + number / rate_per_s) < stop_s:
            await asyncio.sleep(max(0.0, due_s - time.time()))
            tasks.append(asyncio.create_task(one(client, paths[number % len(paths)])))
            number += 1
        await asyncio.gather(*tasks)
    if errors:
        print(f"read errors: {errors}")
    return latencies_ms


def controller_process() -> psutil.Process:
    """The uvicorn child this process started (the spawn context's resource tracker is the other child)."""
    children = [child for child in psutil.Process().children() if "resource_tracker" not in " ".join(child.cmdline())]
    return max(children, key=lambda child: child.memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2, help="agent processes sharing the nodes")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--reads-per-s", type=float, default=200.0)
    parser.add_argument("--inventory", action="store_true", help="also read the whole device list")
    parser.add_argument(
        "--push-every-s", type=float, default=1.0, help="how often each node sends what it collected (every second)"
    )
    args = parser.parse_args()
    print(f"{platform.node()}: {psutil.cpu_count()} cores, Python {platform.python_version()}")
    # Other work on the machine competes for the same cores; the figures mean little without it.
    print("load average before: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    nodes = [f"node-{index:04d}" for index in range(args.nodes)]
    with fresh_schema() as url:
        node_ids = register(url, nodes)
        with controller(url, rollups=True) as base_url:
            plan = {
                "name": "read-load",
                "duration": "1h",
                "devices": {"simulated": 1},
                "workloads": [{"name": "gemm"}],
            }
            campaign_id = httpx.post(f"{base_url}/api/v1/campaigns", json=plan, headers=HEADERS).json()["id"]
            server = controller_process()
            warmup_s = 5.0
            begin_s = time.time() + 2.0
            stop_s = begin_s + args.duration_s
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            agents = [
                context.Process(
                    target=agent_process,
                    args=(base_url, nodes[share :: args.processes], campaign_id, stop_s, args.push_every_s, results),
                )
                for share in range(args.processes)
            ]
            for agent in agents:
                agent.start()
            time.sleep(max(0.0, begin_s + warmup_s - time.time()))
            cpu_before = server.cpu_times()
            wall_before = time.monotonic()
            stored_before = stored_samples(url, list(node_ids.values()))
            paths = [*READ_PATHS, INVENTORY_PATH] if args.inventory else list(READ_PATHS)
            latencies_ms = asyncio.run(read_load(base_url, paths, campaign_id, args.reads_per_s, time.time(), stop_s))
            cpu_after = server.cpu_times()
            wall_s = time.monotonic() - wall_before
            rss_bytes = server.memory_info().rss
            stored_during = stored_samples(url, list(node_ids.values())) - stored_before
            tallies = [results.get(timeout=120) for _ in agents]
            for agent in agents:
                agent.join(timeout=30)
            stored = stored_samples(url, list(node_ids.values()))
    print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    produced = sum(tally["produced"] for tally in tallies)
    acknowledged = sum(tally["acknowledged"] for tally in tallies)
    backlog = sum(tally["backlog"] for tally in tallies)
    failures = sum(tally["failures"] for tally in tallies)
    requests = sum(tally["requests"] for tally in tallies)
    cores = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) / wall_s
    every_ms = [latency for path_ms in latencies_ms.values() for latency in path_ms]
    quantiles = statistics.quantiles(every_ms, n=100)
    offered = args.nodes * DEVICES_PER_NODE * len(METRICS)
    print(
        f"fleet: {args.nodes} nodes x {DEVICES_PER_NODE} devices x {len(METRICS)} metrics at 1 Hz, "
        f"each pushing every {args.push_every_s:g} s"
    )
    print(f"  offered {offered:,} samples/s; stored {stored_during / wall_s:,.0f} samples/s over {wall_s:.0f} s")
    print(f"  produced {produced:,}, acknowledged {acknowledged:,}, stored {stored:,}, backlog at stop {backlog:,}")
    print(f"  push requests {requests:,}, failed (retried) {failures}")
    print(f"  lost = produced - backlog - stored = {produced - backlog - stored}")
    print(f"  controller: {cores:.2f} cores, {rss_bytes / 2**20:.0f} MiB resident")
    print(
        f"  reads at {args.reads_per_s:.0f}/s: {len(every_ms)} answered, p50 {quantiles[49]:.1f} ms, "
        f"p90 {quantiles[89]:.1f} ms, p99 {quantiles[98]:.1f} ms, max {max(every_ms):.1f} ms"
    )
    for path, path_ms in latencies_ms.items():
        cuts = statistics.quantiles(path_ms, n=100)
        print(f"    GET {path}: p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms")


if __name__ == "__main__":
    main()

"""A campaign through a node loss, a killed worker, a hung worker, a killed controller and a network partition.

A real Ray cluster (head + 3 nodes on loopback), the controller as its own process (`python -m soak serve`, killed
with SIGKILL and started again), one agent per node talking to it through a proxy the test can cut. Afterwards
the campaign has completed, each fault is a finding (or event) on the right node and device at about the right
time, and every sample each agent produced is stored exactly once, counted by batch id against its spool's ledger
(or, of its last second, still waits in its spool to be sent again).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import func, select

from agents.spool import Spool
from soak.campaigns.models import WorkloadRun
from soak.db import make_engine, session_factory
from soak.embedded import free_port, start_agent, stop_agents
from soak.migrations import upgrade
from soak.nodes.models import Device, Node
from soak.scheduler.discovery import node_resource
from soak.telemetry.models import Event, IngestedBatch, Sample
from tests.tcp_proxy import PartitionableProxy

pytestmark = pytest.mark.ray
TOKEN = "chaos-token-0123456789abcdef0123456789abcdef"
NODES = {"node-0": "sim0", "node-1": "sim1", "node-2": "sim2"}  # one simulated device each
CRASHED, HUNG, LOST = "sim0", "sim1", "sim2"
HANG_AT_S = 25.0
# Generous for two shared cores: a fault's finding must land near the fault, not at the campaign's end.
ROUGHLY_S = 30.0


def _plan() -> dict[str, Any]:
    return {
        "name": "chaos",
        "duration": "110s",
        "warmup": "10s",
        "rotation": "40s",
        "sample_interval": "1s",
        "devices": {"simulated": 3},
        "workloads": [{"name": "gemm", "params": {"size": 32}}],
        "faults": [{"kind": "hang", "device": HUNG, "start": f"{HANG_AT_S:.0f}s"}],
        # Any restart is a crash loop here, so that one killed worker makes a finding within the test's minutes.
        "acceptance": {"liveness": {"max_restarts_per_hour": 0}},
        "seed": 5,
    }


class ControllerProcess:
    """`python -m soak serve` on a fixed port, attached to the test's Ray cluster; killable and restartable."""

    def __init__(self, *, database_url: str, ray_address: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {
            **os.environ,
            "SOAK_DATABASE_URL": database_url,
            "SOAK_API_TOKEN": TOKEN,
            "SOAK_PORT": str(self.port),
            "SOAK_EXECUTOR": "ray",
            "SOAK_RAY_ADDRESS": ray_address,
            "SOAK_DETECT_INTERVAL_S": "5",
            "SOAK_HANG_TIMEOUT_S": "10",
            "SOAK_PLACEMENT_WAIT_S": "60",
        }
        self._log = log_path.open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until the API answers."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "soak", "serve"], env=self._env, stdout=self._log, stderr=self._log
        )
        deadline_s = time.time() + 60
        while True:
            assert self.process.poll() is None, "the controller exited while starting; see controller.log"
            try:
                if httpx.get(f"{self.url}/api/v1/campaigns", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.time() < deadline_s, "the controller did not start within a minute"
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the host or the OOM killer takes it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """End it at teardown."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


@pytest.fixture
def cluster() -> Iterator[Any]:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": 80 * 1024 * 1024,
            # A raylet that is gone counts as dead after about 4 s rather than Ray's default half minute.
            "_system_config": {
                "health_check_initial_delay_ms": 1000,
                "health_check_period_ms": 1000,
                "health_check_timeout_ms": 1000,
                "health_check_failure_threshold": 3,
            },
        },
    )
    yield cluster
    cluster.shutdown()


def _add_node(cluster: Any, name: str) -> Any:
    return cluster.add_node(
        num_cpus=1, resources={"SOAK_SIM": 1.0, node_resource(name): 1.0}, object_store_memory=80 * 1024 * 1024
    )


def _worker_pid(ray_node: Any) -> int:
    """The pid of the device worker actor under a node's raylet."""
    from ray._private import ray_constants

    raylet = psutil.Process(ray_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    for child in raylet.children(recursive=True):
        try:
            if "DeviceWorker" in " ".join([child.name(), *child.cmdline()]):
                return int(child.pid)
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no DeviceWorker process under the node's raylet")


def _wait(condition: Callable[[], bool], what: str, *, give_up_s: float = 90.0) -> None:
    deadline_s = time.time() + give_up_s
    while not condition():
        assert time.time() < deadline_s, f"gave up waiting for {what}"
        time.sleep(0.5)


def test_a_campaign_survives_node_loss_crashes_hangs_a_controller_kill_and_a_partition(
    cluster: Any, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'soak.db'}"
    upgrade(database_url)
    sessions = session_factory(make_engine(database_url))
    ray_nodes = {name: _add_node(cluster, name) for name in NODES}
    cluster.wait_for_nodes()
    controller = ControllerProcess(database_url=database_url, ray_address=cluster.address, log_path=tmp_path / "c.log")
    controller.start()
    proxies = {name: PartitionableProxy(controller.port) for name in NODES}
    agents = {
        name: start_agent(
            controller_url=proxies[name].url,
            token=TOKEN,
            node=name,
            data_dir=tmp_path / "nodes" / name,
            simulated=1,
            sim_first_index=int(device.removeprefix("sim")),
        )
        for name, device in NODES.items()
    }
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    try:
        _wait(lambda: len(client.get(f"{controller.url}/api/v1/devices").json()) >= 3, "three registered devices")
        created = client.post(f"{controller.url}/api/v1/campaigns", json=_plan())
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]

        def every_worker_reports() -> bool:
            with sessions() as session:
                reporting = session.scalar(
                    select(func.count(func.distinct(Sample.device_id))).where(
                        Sample.campaign_id == campaign_id, Sample.metric == "worker.busy_ratio"
                    )
                )
            return reporting == len(NODES)

        _wait(every_worker_reports, "a report from the worker of every device")
        started_s = datetime.fromisoformat(_campaign(client, controller.url, campaign_id)["started_at"]).timestamp()

        crashed_s = time.time()
        os.kill(_worker_pid(ray_nodes["node-0"]), signal.SIGKILL)
        proxies["node-0"].partition()
        partitioned_s = time.time()

        time.sleep(max(0.0, started_s + HANG_AT_S + 3 - time.time()))
        lost_s = time.time()
        proxies["node-2"].partition()  # the whole node is cut off: its raylet, and its agent's pushes
        cluster.remove_node(ray_nodes.pop("node-2"), allow_graceful=False)

        time.sleep(12)
        controller.kill()
        time.sleep(8)
        controller.start()

        time.sleep(5)
        proxies["node-0"].heal()
        assert time.time() - partitioned_s > 30, "the partition spans the controller's restart"
        ray_nodes["node-2"] = _add_node(cluster, "node-2")
        proxies["node-2"].heal()

        campaign = _wait_for_end(client, controller.url, campaign_id)
        assert campaign["state"] == "completed", campaign["reason"]
    finally:
        client.close()
        stop_agents(list(agents.values()))
        controller.stop()
        for proxy in proxies.values():
            proxy.close()

    with sessions() as session:
        nodes = {node.name: node.id for node in session.scalars(select(Node))}
        events = [
            (event.kind, event.node_id, event.device_id, event.time_s)
            for event in session.scalars(select(Event).where(Event.campaign_id == campaign_id))
        ]
        device_ids = {device.name: device.id for device in session.scalars(select(Device))}
        runs = list(session.scalars(select(WorkloadRun).where(WorkloadRun.campaign_id == campaign_id)))

    def at(kind: str, **where: int) -> list[float]:
        return [
            time_s
            for event_kind, node_id, device_id, time_s in events
            if event_kind == kind
            and where.get("node_id", node_id) == node_id
            and where.get("device_id", device_id) == device_id
        ]

    # Each fault is an event on its node or device, near when the test caused it.
    assert any(abs(t - crashed_s) < ROUGHLY_S for t in at("worker_died", device_id=device_ids[CRASHED])), events
    assert any(abs(t - (started_s + HANG_AT_S)) < ROUGHLY_S for t in at("worker_hang", device_id=device_ids[HUNG]))
    lost = at("node_lost", node_id=nodes["node-2"])
    assert lost and abs(lost[0] - lost_s) < ROUGHLY_S, events
    assert at("node_returned", node_id=nodes["node-2"]), "the node's worker was placed again when it came back"
    assert len(at("campaign_resumed")) == 1, events
    # Never two workers on one device: its workload runs follow one another (within the scheduler's tick).
    by_device: dict[int, list[WorkloadRun]] = {}
    for run in runs:
        by_device.setdefault(run.device_id, []).append(run)
    for device_runs in by_device.values():
        device_runs.sort(key=lambda run: run.started_s)
        for earlier, later in itertools.pairwise(device_runs):
            assert earlier.ended_s is not None and earlier.ended_s <= later.started_s + 1.0, (earlier, later)

    _assert_findings(database_url, campaign_id, crashed_s=crashed_s, hung_s=started_s + HANG_AT_S, lost_s=lost_s)
    _assert_every_sample_stored_once(tmp_path, database_url, nodes)


def _campaign(client: httpx.Client, url: str, campaign_id: int) -> dict[str, Any]:
    campaign: dict[str, Any] = client.get(f"{url}/api/v1/campaigns/{campaign_id}").json()["campaign"]
    return campaign


def _wait_for_end(client: httpx.Client, url: str, campaign_id: int) -> dict[str, Any]:
    deadline_s = time.time() + 240
    while (campaign := _campaign(client, url, campaign_id))["state"] not in {"completed", "stopped", "failed"}:
        assert time.time() < deadline_s, "the campaign did not end"
        time.sleep(1)
    return campaign


def _assert_findings(database_url: str, campaign_id: int, *, crashed_s: float, hung_s: float, lost_s: float) -> None:
    from soak.findings.service import list_findings

    with session_factory(make_engine(database_url))() as session:
        found = {(f.device, f.kind): f for f in list_findings(session=session, campaign_id=campaign_id)}
    assert abs(found[(CRASHED, "crash_loop")].onset_s - crashed_s) < ROUGHLY_S, found
    assert abs(found[(HUNG, "worker_hang")].onset_s - hung_s) < ROUGHLY_S, found
    node_lost = found[(LOST, "node_lost")]
    assert node_lost.subject == "node-2" and abs(node_lost.onset_s - lost_s) < ROUGHLY_S, found
    assert {device for device, kind in found if kind == "node_lost"} == {LOST}, found


def _assert_every_sample_stored_once(tmp_path: Path, database_url: str, nodes: dict[str, int]) -> None:
    with session_factory(make_engine(database_url))() as session:
        for name in NODES:
            node_dir = tmp_path / "nodes" / name
            spool = Spool(
                node_dir / "spool.db", files_dir=node_dir / "spooled", node=name, max_batches=10**6, max_bytes=1 << 40
            )
            try:
                produced = {line.batch_id: line.samples for line in spool.produced()}
                # A batch of the agent's last second may still wait in its spool when the agent stops: not sent yet,
                # or stored but its answer lost on the way back; its next start sends it again, stored once by id.
                waiting = spool.stats().batches
            finally:
                spool.close()
            stored = dict(
                session.execute(
                    select(IngestedBatch.batch_id, IngestedBatch.samples).where(IngestedBatch.node_id == nodes[name])
                ).all()
            )
            assert stored.keys() <= produced.keys(), f"{name}: batches stored that it never produced"
            assert all(stored[batch_id] == produced[batch_id] for batch_id in stored), f"{name}: batch sizes differ"
            unstored = len(produced.keys() - stored.keys())
            assert unstored <= waiting <= 2, f"{name}: {unstored} batches not stored, {waiting} waiting in its spool"
            rows = session.scalar(select(func.count()).select_from(Sample).where(Sample.node_id == nodes[name]))
            assert rows == sum(stored.values()), f"{name}: {rows} sample rows for {sum(stored.values())} stored"

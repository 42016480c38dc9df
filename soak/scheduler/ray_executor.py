"""Workers as Ray actors, each holding its device's Ray resource (GPU, NPU, SOAK_SIM...)."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from soak.nodes.service import PlacementError
from soak.scheduler.discovery import RayNode, node_resource, read_ray_nodes
from soak.scheduler.executor import WorkerPoll
from soak.scheduler.spec import Segment, WorkerSpec
from soak.scheduler.worker import DeviceWorker
from soak.workloads.registry import load_backend

log = logging.getLogger(__name__)
HEARTBEAT_TIMEOUT_S = 5.0
# Workers are detached actors named by campaign and device in this namespace: a controller that restarts finds
# the ones still running instead of placing a second worker on a device.
NAMESPACE = "soak"
NAME_RELEASE_S = 10.0
NODES_CACHE_S = 1.0


def worker_name(spec: WorkerSpec) -> str:
    """The Ray actor name of a campaign's worker on one device, unique in the cluster."""
    return f"soak-campaign-{spec.campaign_id}-{spec.device_name}"


class RayWorkerHandle:
    """A DeviceWorker living in a Ray actor (threaded, so heartbeats answer while a slot runs)."""

    def __init__(self, actor: Any, *, name: str, attached: bool) -> None:
        import ray

        self._ray = ray
        self._actor = actor
        self._name = name
        self.attached = attached
        self._segment_ref: Any = None
        self._heartbeat_ref: Any = None
        self._last_progress_s: float | None = None

    def start_segment(self, segment: Segment) -> None:
        self._segment_ref = self._actor.run_segment.remote(segment)

    def poll(self) -> WorkerPoll:
        ray = self._ray
        try:
            if self._heartbeat_ref is None:
                self._heartbeat_ref = self._actor.heartbeat.remote()
            ready, _ = ray.wait([self._heartbeat_ref], timeout=0)
            if ready:
                self._last_progress_s = ray.get(self._heartbeat_ref)
                self._heartbeat_ref = None
            finished = None
            if self._segment_ref is not None:
                ready, _ = ray.wait([self._segment_ref], timeout=0)
                if ready:
                    finished = ray.get(self._segment_ref)
                    self._segment_ref = None
        except ray.exceptions.RayError as error:
            return WorkerPoll(alive=False, last_progress_s=self._last_progress_s, error=_first_line(error))
        return WorkerPoll(alive=True, last_progress_s=self._last_progress_s, finished=finished)

    def interrupt(self) -> None:
        self._actor.interrupt.remote()

    def kill(self) -> None:
        ray = self._ray
        ray.kill(self._actor, no_restart=True)
        # The name frees once the cluster has noticed; a replacement spawned sooner would find the dying actor.
        give_up_s = time.monotonic() + NAME_RELEASE_S
        while time.monotonic() < give_up_s:
            try:
                ray.get_actor(self._name, namespace=NAMESPACE)
            except ValueError:
                return
            time.sleep(0.1)


def _short(needed: Counter[str], offered: dict[str, float], *, offered_by: str) -> list[str]:
    return [
        f"{resource}: needs {amount:g}, {offered_by} {offered.get(resource, 0):g}"
        for resource, amount in sorted(needed.items())
        if amount > offered.get(resource, 0) + 1e-9
    ]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class RayExecutor:
    """Joins the cluster at `address`, or starts a local one on loopback.

    In a cluster it joins, every worker is pinned to its node's Ray node (`soak_node_<name>`) and is placed only
    once that node is alive; a local cluster is this one host, where every node's workers run.
    """

    name = "ray"

    def __init__(self, *, address: str | None, local_sim_slots: int) -> None:
        import ray

        # Ray would otherwise advertise the machine's external address; soak keeps its traffic on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        self._ray = ray
        self._owns_cluster = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, namespace=NAMESPACE, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(
                    namespace=NAMESPACE,
                    num_cpus=os.cpu_count() or 1,
                    resources={"SOAK_SIM": float(local_sim_slots)},
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    object_store_memory=128 * 1024 * 1024,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
                self._owns_cluster = True
        # Threaded actor: heartbeat() and interrupt() answer while run_segment() holds the device.
        self._actor_class = ray.remote(max_concurrency=4, max_restarts=0)(DeviceWorker)  # type: ignore[call-overload]
        self._nodes: list[RayNode] = []
        self._nodes_read_s = -NODES_CACHE_S

    @property
    def places_by_node(self) -> bool:
        # A cluster it started is this one host: every node's workers run here, and no node carries a pin.
        return not self._owns_cluster

    def _demands(self, spec: WorkerSpec) -> dict[str, float]:
        backend = load_backend(spec.backend)
        demands: dict[str, float] = {"CPU": backend.cpus_per_worker}
        if backend.ray_resource is not None:
            demands[backend.ray_resource] = 1.0
        if self.places_by_node:
            demands[node_resource(spec.node_name)] = 0.001
        return demands

    def ensure_capacity(self, specs: Sequence[WorkerSpec]) -> None:
        if self._owns_cluster:
            needed: Counter[str] = Counter()
            for spec in specs:
                needed.update(self._demands(spec))
            resources: dict[str, float] = self._ray.cluster_resources()  # type: ignore[no-untyped-call]
            short = _short(needed, resources, offered_by="cluster has")
        else:
            # Node by node, for the nodes in the cluster now: the others' workers wait for them (see the runner).
            by_node = {node.name: node for node in self.cluster_nodes() if node.pinned}
            wanted: dict[str, Counter[str]] = {}
            for spec in specs:
                if spec.node_name in by_node:
                    wanted.setdefault(spec.node_name, Counter()).update(self._demands(spec))
            short = [
                f"node {name}: {problem}"
                for name, needed in sorted(wanted.items())
                for problem in _short(needed, by_node[name].resources, offered_by="its Ray node has")
            ]
        if short:
            raise PlacementError(
                "the Ray cluster cannot place every worker (" + "; ".join(short) + "); add nodes that offer "
                "these resources (ray start --resources) or ask for fewer devices"
            )

    def spawn(self, spec: WorkerSpec) -> RayWorkerHandle:
        name = worker_name(spec)
        try:
            return RayWorkerHandle(self._ray.get_actor(name, namespace=NAMESPACE), name=name, attached=True)
        except ValueError:
            pass
        demands = self._demands(spec)
        cpus = demands.pop("CPU")
        # Ray reserves GPUs through num_gpus (and narrows CUDA_VISIBLE_DEVICES); every other device is a resource.
        gpus = demands.pop("GPU", 0.0)
        actor = self._actor_class.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=cpus,
            num_gpus=gpus,
            resources=demands,
        ).remote(spec)
        return RayWorkerHandle(actor, name=name, attached=False)

    def cluster_nodes(self) -> list[RayNode]:
        """The live Ray nodes (read at most once a second)."""
        now_s = time.monotonic()
        if now_s - self._nodes_read_s >= NODES_CACHE_S:
            self._nodes = read_ray_nodes(self._ray.nodes())  # type: ignore[no-untyped-call]
            self._nodes_read_s = now_s
        return self._nodes

    def node_up(self, node_name: str) -> bool | None:
        if not self.places_by_node:
            return None
        return any(node.pinned and node.name == node_name for node in self.cluster_nodes())

    def shutdown(self) -> None:
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()

"""The executor interface: where worker processes live (a Ray cluster, or local processes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from soak.scheduler.discovery import RayNode
from soak.scheduler.spec import Segment, WorkerSpec


@dataclass(frozen=True)
class WorkerPoll:
    """A worker's state as the scheduler sees it on one tick."""

    alive: bool
    last_progress_s: float | None
    finished: dict[str, Any] | None = None
    error: str | None = None


class WorkerHandle(Protocol):
    """The scheduler's grip on one worker."""

    attached: bool
    """Whether spawn found this worker already running, left by an earlier controller process."""

    def start_segment(self, segment: Segment) -> None:
        """Begin a rotation slot; returns at once."""

    def poll(self) -> WorkerPoll:
        """Liveness, progress and, once, the summary of a finished slot."""

    def interrupt(self) -> None:
        """Ask the worker to end its slot at the next interval boundary."""

    def kill(self) -> None:
        """End the worker process now."""


class Executor(Protocol):
    """Starts workers next to their devices."""

    name: str

    @property
    def places_by_node(self) -> bool:
        """Whether each worker is pinned to the Ray node carrying `soak_node_<its node>` (a cluster joined)."""

    def ensure_capacity(self, specs: Sequence[WorkerSpec]) -> None:
        """Raise PlacementError when the workers cannot all be placed."""

    def spawn(self, spec: WorkerSpec) -> WorkerHandle:
        """The device's worker: the one still running for this campaign if there is one, else a new one."""

    def node_up(self, node_name: str) -> bool | None:
        """Whether a worker's node is in the cluster now (a live Ray node carries `soak_node_<name>`); None where
        workers are not placed by node (the one-host Ray cluster the executor started)."""

    def cluster_nodes(self) -> list[RayNode] | None:
        """The live Ray nodes; None without Ray."""

    def shutdown(self) -> None:
        """Release what the executor started."""


def make_executor(name: str, *, ray_address: str | None, local_sim_slots: int) -> Executor:
    """The executor a campaign runs on: `ray` (default, clusters) or `local` (one node, no Ray)."""
    if name == "local":
        from soak.scheduler.local_executor import LocalExecutor

        return LocalExecutor()
    from soak.scheduler.ray_executor import RayExecutor

    return RayExecutor(address=ray_address, local_sim_slots=local_sim_slots)

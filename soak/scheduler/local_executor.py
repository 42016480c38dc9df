"""Workers as local processes: one node, no Ray (e.g. a locked-down GPU box)."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from soak.scheduler.executor import WorkerPoll
from soak.scheduler.spec import Segment, WorkerSpec

log = logging.getLogger(__name__)
_CONTEXT = multiprocessing.get_context("spawn")


def _serve(spec: WorkerSpec, commands: Connection, progress: Synchronized[float], interrupted: Any) -> None:
    """Child process: build the worker, then run slots as they arrive until told to exit (or the controller dies)."""
    import os
    import threading

    from soak.scheduler.worker import DeviceWorker

    worker = DeviceWorker(spec)
    controller_pid = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != controller_pid:
                # A controller killed outright leaves its children behind; the next one starts fresh workers.
                os._exit(0)
            progress.value = worker.heartbeat()
            if interrupted.is_set():
                worker.interrupt()
                interrupted.clear()
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        segment = commands.recv()
        if segment is None:
            return
        commands.send(worker.run_segment(segment))


class LocalWorkerHandle:
    """A worker running in a child process of the controller."""

    attached = False

    def __init__(self, spec: WorkerSpec) -> None:
        self._commands, child_end = _CONTEXT.Pipe()
        self._progress = _CONTEXT.Value("d", 0.0)
        self._interrupted = _CONTEXT.Event()
        self._process = _CONTEXT.Process(
            target=_serve,
            args=(spec, child_end, self._progress, self._interrupted),
            name=f"soak-worker-{spec.device_name}",
            daemon=True,
        )
        self._process.start()

    def start_segment(self, segment: Segment) -> None:
        self._commands.send(segment)

    def poll(self) -> WorkerPoll:
        progress_s = self._progress.value or None
        finished = None
        try:
            if self._commands.poll():
                finished = self._commands.recv()
        except (EOFError, OSError):
            pass
        if not self._process.is_alive():
            return WorkerPoll(
                alive=False,
                last_progress_s=progress_s,
                finished=finished,
                error=f"worker process exited with code {self._process.exitcode}",
            )
        return WorkerPoll(alive=True, last_progress_s=progress_s, finished=finished)

    def interrupt(self) -> None:
        self._interrupted.set()

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5)


class LocalExecutor:
    """Every worker in a local child process."""

    name = "local"
    places_by_node = False

    def ensure_capacity(self, specs: Sequence[WorkerSpec]) -> None:
        # Devices were already matched against what this node's agents registered; nothing else limits us.
        return None

    def spawn(self, spec: WorkerSpec) -> LocalWorkerHandle:
        return LocalWorkerHandle(spec)

    def node_up(self, node_name: str) -> bool | None:
        # Every worker runs on this very host: while the controller runs, so does its node.
        return True

    def cluster_nodes(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

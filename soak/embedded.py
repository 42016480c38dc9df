"""A controller and node agents on one machine, all on loopback: what `soak demo` and the end-to-end tests run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import uvicorn

from soak.api import create_app
from soak.config import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedController:
    """The controller served by uvicorn in a thread of this process; start() returns once it listens."""

    def __init__(self, settings: Settings, *, run_scheduler: bool = True) -> None:
        self.settings = settings
        self._run_scheduler = run_scheduler
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the API answers."""
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> None:
        """Serve until stop(); raises if the server dies while starting."""
        app = create_app(self.settings, run_scheduler=self._run_scheduler)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.settings.port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="soak-controller", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the controller did not start on port {self.settings.port}")
            time.sleep(0.02)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Shut the server (and its scheduler) down."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=60)
        self._server = self._thread = None


def start_agent(
    *,
    controller_url: str,
    token: str,
    node: str,
    data_dir: Path,
    simulated: int = 0,
    sim_first_index: int = 0,
    cpu_device: bool = False,
    output: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Run `python -m agents` for one node, its /metrics on a free port."""
    env = {
        **os.environ,
        "SOAK_AGENT_CONTROLLER_URL": controller_url,
        "SOAK_API_TOKEN": token,
        "SOAK_AGENT_NODE_NAME": node,
        "SOAK_AGENT_SIMULATED": str(simulated),
        "SOAK_AGENT_SIM_FIRST_INDEX": str(sim_first_index),
        "SOAK_AGENT_CPU_DEVICE": str(cpu_device).lower(),
        "SOAK_AGENT_METRICS_PORT": "0",
        "SOAK_AGENT_DATA_DIR": str(data_dir),
    }
    return subprocess.Popen([sys.executable, "-m", "agents"], env=env, stdout=output, stderr=output)


def stop_agents(processes: list[subprocess.Popen[bytes]]) -> None:
    """Ask every agent to finish (they deliver what they hold first), then wait for them."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)

"""The node agent inside a Ray actor on its node, for clusters whose controller starts the agents itself.

The controller wraps this class with `ray.remote` and pins it to its node (soak/scheduler/agent_actors.py); the
agent is the daemon's own `Agent`, its loop run in a thread so that the actor answers calls meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from agents.agent import Agent
from agents.config import AgentSettings

log = logging.getLogger(__name__)
STOP_WAIT_S = 30.0


class AgentActor:
    """One node's agent, running from construction until stop()."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._agent = Agent(AgentSettings(**settings))
        self._thread = threading.Thread(target=self._run, name="soak-agent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._agent.run()
        except Exception:
            # A daemon's unit restarts it; here the process exits and Ray starts the actor again (max_restarts).
            log.exception("agent of node %s failed; its actor restarts", self._agent.settings.node_name)
            os._exit(1)

    def status(self) -> dict[str, Any]:
        """The node it serves, whether its loop runs, and where its /metrics listens."""
        return {
            "node": self._agent.settings.node_name,
            "running": self._thread.is_alive(),
            "metrics_port": self._agent.metrics_port,
        }

    def stop(self) -> None:
        """End the loop once it has delivered what it holds (as a daemon does on SIGTERM)."""
        self._agent.stop()
        self._thread.join(timeout=STOP_WAIT_S)

"""The controller's scheduler thread: starts pending campaigns, one runner thread each."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from soak.campaigns import service as campaigns
from soak.config import Settings
from soak.db import session_scope
from soak.scheduler.discovery import RayNode
from soak.scheduler.executor import Executor, make_executor
from soak.scheduler.runner import CampaignRunner

log = logging.getLogger(__name__)
AGENT_ACTORS_CHECK_S = 5.0


class Supervisor:
    """Polls for pending campaigns; the executor (and a local Ray cluster) starts with the first one.

    With SOAK_AGENTS_AS_RAY_ACTORS it starts at once instead, and the loop starts the missing agents too.
    """

    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._executor: Executor | None = None
        self._executor_lock = threading.Lock()
        self._agents_checked_s = -AGENT_ACTORS_CHECK_S
        self._runners: dict[int, threading.Thread] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-supervisor", daemon=True)

    def start(self) -> None:
        """Resume the campaigns an earlier controller process left running, then begin watching for new ones."""
        with session_scope(self._sessions) as session:
            orphans = [campaign.id for campaign in campaigns.orphaned_campaigns(session=session)]
        for campaign_id in orphans:
            log.warning("campaign %s was running when the controller last stopped; resuming it", campaign_id)
            self._launch(campaign_id)
        if self._agent_actors:
            self.executor()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and release the executor; a campaign still running resumes when a controller starts again."""
        self._stop.set()
        self._thread.join(timeout=10)
        for thread in self._runners.values():
            thread.join(timeout=0)
        if self._executor is not None:
            self._executor.shutdown()

    def active(self) -> int:
        """Campaign runners still alive."""
        return sum(thread.is_alive() for thread in self._runners.values())

    @property
    def _agent_actors(self) -> bool:
        return self._settings.agents_as_ray_actors and self._settings.executor == "ray"

    def executor(self) -> Executor:
        """The executor, started on first use (joining the Ray cluster, or starting a local one)."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = make_executor(
                    self._settings.executor,
                    ray_address=self._settings.ray_address,
                    local_sim_slots=self._settings.local_sim_slots,
                )
            return self._executor

    def cluster_nodes(self) -> tuple[list[RayNode] | None, bool]:
        """The live Ray nodes (None with no Ray to read) and whether workers are pinned to them by node name.

        A cluster at SOAK_RAY_ADDRESS is joined to be read; a local one is read only once started.
        """
        if self._settings.executor != "ray" or (self._executor is None and self._settings.ray_address is None):
            return None, False
        executor = self.executor()
        return executor.cluster_nodes(), executor.places_by_node

    def _tend_agent_actors(self) -> None:
        now_s = time.monotonic()
        if not self._agent_actors or now_s - self._agents_checked_s < AGENT_ACTORS_CHECK_S:
            return
        self._agents_checked_s = now_s
        from soak.scheduler.agent_actors import start_agent_actors

        ray_nodes = self.executor().cluster_nodes() or []
        with session_scope(self._sessions) as session:
            start_agent_actors(session=session, settings=self._settings, ray_nodes=ray_nodes)

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.supervisor_tick_s):
            try:
                self._tend_agent_actors()
            except Exception:
                log.exception("starting node agents as Ray actors failed; retrying")
            try:
                with session_scope(self._sessions) as session:
                    pending = [c.id for c in campaigns.pending_campaigns(session=session)]
                for campaign_id in pending:
                    if campaign_id not in self._runners:
                        self._launch(campaign_id)
            except Exception:
                log.exception("supervisor tick failed; retrying")

    def _launch(self, campaign_id: int) -> None:
        runner = CampaignRunner(
            campaign_id=campaign_id, sessions=self._sessions, executor=self.executor(), settings=self._settings
        )
        thread = threading.Thread(target=runner.run, name=f"soak-campaign-{campaign_id}", daemon=True)
        self._runners[campaign_id] = thread
        thread.start()

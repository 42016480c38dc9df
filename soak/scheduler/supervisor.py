"""The controller's scheduler thread: starts pending campaigns, one runner thread each."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from soak.campaigns import service as campaigns
from soak.config import Settings
from soak.db import session_scope
from soak.scheduler.executor import Executor, make_executor
from soak.scheduler.runner import CampaignRunner

log = logging.getLogger(__name__)


class Supervisor:
    """Polls for pending campaigns; the executor (and a local Ray cluster) starts with the first one."""

    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._executor: Executor | None = None
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

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.supervisor_tick_s):
            try:
                with session_scope(self._sessions) as session:
                    pending = [c.id for c in campaigns.pending_campaigns(session=session)]
                for campaign_id in pending:
                    if campaign_id not in self._runners:
                        self._launch(campaign_id)
            except Exception:
                log.exception("supervisor tick failed; retrying")

    def _launch(self, campaign_id: int) -> None:
        if self._executor is None:
            self._executor = make_executor(
                self._settings.executor,
                ray_address=self._settings.ray_address,
                local_sim_slots=self._settings.local_sim_slots,
            )
        runner = CampaignRunner(
            campaign_id=campaign_id, sessions=self._sessions, executor=self._executor, settings=self._settings
        )
        thread = threading.Thread(target=runner.run, name=f"soak-campaign-{campaign_id}", daemon=True)
        self._runners[campaign_id] = thread
        thread.start()

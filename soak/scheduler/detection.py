"""A campaign's detection passes on a thread of their own, so that the runner's loop never waits on one."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from soak.analysis.engine import run_detection, shortest_block_s
from soak.db import session_scope
from soak.plan import Plan

log = logging.getLogger(__name__)

# The last pass decides the stored findings the report judges: a failed one is tried again this often.
FINAL_ATTEMPTS = 3
FINAL_RETRY_S = 5.0


def detect_interval_s(plan: Plan, *, configured_s: float) -> float:
    """Seconds from one pass's start to the next: the configured interval, or the campaign's shortest block when
    longer. Block-judged rules (leak, drift, peers, stack change) only change their verdict when a block completes,
    so a multi-day campaign (5-minute blocks) gets a pass every 5 minutes and a demo of minutes one every few
    seconds; rules on events (driver errors, liveness) date findings by their data, not by the pass."""
    return max(configured_s, shortest_block_s(plan))


class DetectionThread:
    """Runs detection over a campaign every interval_s, one pass at a time, each in its own session.

    A pass that fails is logged and the next one runs at the usual time. `finish` ends the thread and runs the final
    pass in the caller, after any pass in progress, so that the findings cover the whole campaign when it returns.
    """

    def __init__(
        self,
        *,
        campaign_id: int,
        sessions: sessionmaker[Session],
        plan: Plan,
        start_s: float,
        interval_s: float,
    ) -> None:
        self.campaign_id = campaign_id
        self._sessions = sessions
        self._plan = plan
        self._start_s = start_s
        self.interval_s = interval_s
        self._stop = threading.Event()
        # Held for a whole pass: the final pass never overlaps the thread's last one.
        self._one_pass = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"soak-detect-{campaign_id}", daemon=True)

    def start(self) -> None:
        """Begin passing: the first pass one interval after the start."""
        self._thread.start()

    def stop(self, *, wait: bool = False) -> None:
        """Start no further pass; one in progress finishes (its transaction commits or rolls back whole), and with
        wait, before this returns."""
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join()

    def finish(self) -> bool:
        """Stop the thread, wait for its pass in progress, then run the final pass; whether it succeeded."""
        self.stop(wait=True)
        for attempt in range(1, FINAL_ATTEMPTS + 1):
            if self.run_pass():
                return True
            if attempt < FINAL_ATTEMPTS:
                time.sleep(FINAL_RETRY_S)
        log.error("campaign %s: final detection failed %d times", self.campaign_id, FINAL_ATTEMPTS)
        return False

    def run_pass(self) -> bool:
        """One pass over everything stored up to now; whether it succeeded (a failure is logged)."""
        with self._one_pass:
            started_s = time.time()
            try:
                with session_scope(self._sessions) as session:
                    run_detection(
                        session=session,
                        campaign_id=self.campaign_id,
                        plan=self._plan,
                        start_s=self._start_s,
                        end_s=started_s,
                    )
            except Exception:
                log.exception("detection failed for campaign %s; will retry", self.campaign_id)
                return False
            log.debug("campaign %s: detection pass took %.1f s", self.campaign_id, time.time() - started_s)
            return True

    def _loop(self) -> None:
        next_s = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_s - time.monotonic())):
            # From start to start, so a slow pass delays the next one but never overlaps it.
            next_s = time.monotonic() + self.interval_s
            self.run_pass()

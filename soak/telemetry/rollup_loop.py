"""The controller's rollup thread: merges new samples into the rollups every interval, catching up in batches."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from soak.telemetry.rollups import DEFAULT_MAX_ROWS, roll_up

log = logging.getLogger(__name__)


class RollupLoop:
    """Runs roll_up every interval_s in a daemon thread; a failed run is logged and the next one retries it."""

    def __init__(self, *, sessions: sessionmaker[Session], interval_s: float, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._max_rows = max_rows
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-rollups", daemon=True)

    def start(self) -> None:
        """Begin rolling up."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in progress (its transaction commits or rolls back whole)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def catch_up(self) -> int:
        """Roll up batch after batch until the rollups reach the settled samples (or stop is asked); samples read."""
        read = 0
        while not self._stop.is_set():
            with self._sessions() as session:
                batch = roll_up(session=session, max_rows=self._max_rows)
            read += batch
            if batch < self._max_rows:
                break
        return read

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.catch_up()
            except Exception:
                log.exception("rollup failed; retrying in %g s", self._interval_s)

"""The controller's telemetry maintenance thread: rollups, daily partitions ahead of time, raw retention."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from soak.telemetry.partitions import ensure_partitions, retire_partitions
from soak.telemetry.rollups import DEFAULT_MAX_ROWS, roll_up

log = logging.getLogger(__name__)

# Partitions are created two days ahead, so a run a minute is ample even when some are skipped for a lock.
PARTITION_INTERVAL_S = 60.0
# Retention works in whole days; an hour late costs an hour of disk.
RETENTION_INTERVAL_S = 3600.0


class MaintenanceLoop:
    """In a daemon thread, every interval_s: roll up new samples; every minute create partitions ahead; every hour
    retire raw samples older than raw_retention_days. A failed task is logged and retried at its next turn."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        interval_s: float,
        raw_retention_days: float,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._raw_retention_days = raw_retention_days
        self._max_rows = max_rows
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-telemetry-maintenance", daemon=True)

    def start(self) -> None:
        """Begin maintaining: partitions first, so that the day's samples do not land in the default partition."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the task in progress (its transaction commits or rolls back whole)."""
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

    def ensure_partitions(self) -> None:
        """Create today's partition and the next days' if missing (Postgres)."""
        with self._sessions() as session:
            ensure_partitions(session=session, now_s=time.time())

    def retire_raw(self) -> None:
        """Drop raw samples past the retention that the rollups hold."""
        with self._sessions() as session:
            retire_partitions(session=session, now_s=time.time(), retention_days=self._raw_retention_days)

    def _loop(self) -> None:
        tasks: tuple[tuple[Callable[[], object], float], ...] = (
            (self.ensure_partitions, PARTITION_INTERVAL_S),
            (self.catch_up, self._interval_s),
            (self.retire_raw, RETENTION_INTERVAL_S),
        )
        next_run_s = [0.0] * len(tasks)
        while not self._stop.is_set():
            for index, (task, every_s) in enumerate(tasks):
                if time.monotonic() < next_run_s[index]:
                    continue
                next_run_s[index] = time.monotonic() + every_s
                try:
                    task()
                except Exception:
                    log.exception("telemetry maintenance: %s failed; retrying in %g s", task.__name__, every_s)
            self._stop.wait(self._interval_s)

"""The agent's on-disk spool: a FIFO of telemetry batches in SQLite (WAL) that outlives restarts and outages.

A batch keeps its id until the controller acknowledges it, so a retry after a lost answer is stored once. The
worker report files a batch carries move from the inbox into the spool's folder once the batch is committed, and
are deleted only on acknowledgement. Over its bounds the spool drops the oldest telemetry first and says so in a
`telemetry_dropped` event, itself a spooled batch.

It also keeps a ledger of every batch it took in over the last week (id, samples, events), acknowledged or not:
what this node produced, to hold against what the controller stored.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    created_s REAL NOT NULL,
    payload TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    events INTEGER NOT NULL,
    first_s REAL NOT NULL,
    last_s REAL NOT NULL,
    drop_notice INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_batch_drop_notice ON batch (seq) WHERE drop_notice = 1;
CREATE TABLE IF NOT EXISTS report_file (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES batch (seq) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_report_file_seq ON report_file (seq);
CREATE TABLE IF NOT EXISTS produced (
    batch_id TEXT PRIMARY KEY,
    created_s REAL NOT NULL,
    samples INTEGER NOT NULL,
    events INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_produced_created_s ON produced (created_s);
"""
_REPORTS_NAMESPACE = uuid.UUID("6f1d3c52-8a4e-4d0b-9a7e-2c1f5e8b9d40")
_QUERY_CHUNK = 500
_KEEP_FREE_PAGES = 1024  # 4 MiB: the room a normal cycle needs stays allocated
LEDGER_KEEP_S = 7 * 86400.0  # about 40 MB at two batches a second


def report_batch_id(node: str, names: Sequence[str]) -> str:
    """The id of the batch carrying these report files: the same files always make the same id."""
    return str(uuid.uuid5(_REPORTS_NAMESPACE, "\n".join([node, *sorted(names)])))


@dataclass(frozen=True)
class Outgoing:
    """A batch to spool, in the controller's TelemetryBatch shape, and the inbox report files it carries."""

    payload: dict[str, Any]
    files: tuple[Path, ...] = ()

    @property
    def batch_id(self) -> str:
        """The batch's idempotency id."""
        return str(self.payload["batch_id"])


@dataclass(frozen=True)
class Spooled:
    """A batch waiting in the spool: its JSON body as it is sent, and the report files it carries."""

    seq: int
    batch_id: str
    created_s: float
    payload_json: str
    size_bytes: int
    drop_notice: bool
    files: tuple[Path, ...]


@dataclass
class DropCounts:
    """How much telemetry was dropped, and the time range its data covered."""

    batches: int = 0
    samples: int = 0
    events: int = 0
    first_s: float = math.inf
    last_s: float = -math.inf

    def add(self, other: DropCounts) -> None:
        """Count more dropped telemetry."""
        self.batches += other.batches
        self.samples += other.samples
        self.events += other.events
        self.first_s = min(self.first_s, other.first_s)
        self.last_s = max(self.last_s, other.last_s)


@dataclass(frozen=True)
class ProducedBatch:
    """A ledger line: a batch the spool took in, whether or not the controller has it yet."""

    batch_id: str
    created_s: float
    samples: int
    events: int


@dataclass(frozen=True)
class SpoolStats:
    """Depth of the spool and what it dropped since it was opened."""

    batches: int
    size_bytes: int
    oldest_created_s: float | None
    dropped: DropCounts = field(default_factory=DropCounts)


@dataclass
class _Depth:
    batches: int = 0
    size_bytes: int = 0


class Spool:
    """FIFO of batches at `path` (SQLite, WAL); carried report files live in `files_dir`.

    Used by one thread at a time, which sends the oldest batches (`oldest`) and removes them only by `ack` or
    `set_aside`.
    """

    def __init__(self, path: Path, *, files_dir: Path, node: str, max_batches: int, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        files_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir = files_dir
        self._node = node
        self._max_batches = max_batches
        self._max_bytes = max_bytes
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
        self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a commit survives a crash of the agent; a power loss may undo the last ones, never corrupt.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)
        # Drop notices are exempt from the bounds (there are at most two), so the two depths are kept apart.
        self._telemetry = _Depth()
        self._notices = _Depth()
        for notice, batches, size_bytes in self._db.execute(
            "SELECT drop_notice, count(*), coalesce(sum(size_bytes), 0) FROM batch GROUP BY drop_notice"
        ):
            depth = self._notices if notice else self._telemetry
            depth.batches, depth.size_bytes = int(batches), int(size_bytes)
        self._dropped = DropCounts()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def stats(self) -> SpoolStats:
        """Depth, age of the oldest batch, and drops since the spool was opened."""
        row = self._db.execute("SELECT created_s FROM batch ORDER BY seq LIMIT 1").fetchone()
        return SpoolStats(
            batches=self._telemetry.batches + self._notices.batches,
            size_bytes=self._telemetry.size_bytes + self._notices.size_bytes,
            oldest_created_s=None if row is None else float(row[0]),
            dropped=replace(self._dropped),
        )

    def append(self, batches: Sequence[Outgoing], *, now_s: float) -> None:
        """Add batches in one transaction, skipping ids already spooled, then drop the oldest while over bounds."""
        if not batches:
            return
        moves: list[tuple[Path, Path]] = []
        change = _Depth()
        dropped = DropCounts()
        with self._transaction() as db:
            # A drop notice is only ever sent at the head (see oldest), so one behind it has never left the agent.
            (head_seq,) = db.execute("SELECT min(seq) FROM batch").fetchone()
            for batch in batches:
                payload_json = json.dumps(batch.payload, separators=(",", ":"))
                size_bytes = len(payload_json) + sum(_file_size(path) for path in batch.files)
                first_s, last_s = _time_range(batch.payload, default_s=now_s)
                cursor = db.execute(
                    "INSERT INTO batch (batch_id, created_s, payload, size_bytes, samples, events, first_s, last_s)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
                    (
                        batch.batch_id,
                        now_s,
                        payload_json,
                        size_bytes,
                        len(batch.payload.get("samples", ())),
                        len(batch.payload.get("events", ())),
                        first_s,
                        last_s,
                    ),
                )
                if cursor.rowcount == 0:
                    continue
                db.execute(
                    "INSERT INTO produced (batch_id, created_s, samples, events) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (batch_id) DO NOTHING",
                    (
                        batch.batch_id,
                        now_s,
                        len(batch.payload.get("samples", ())),
                        len(batch.payload.get("events", ())),
                    ),
                )
                try:
                    db.executemany(
                        "INSERT INTO report_file (name, seq) VALUES (?, ?)",
                        [(path.name, cursor.lastrowid) for path in batch.files],
                    )
                except sqlite3.IntegrityError:
                    raise ValueError(f"batch {batch.batch_id} carries a report file another batch carries") from None
                moves += [(path, self.files_dir / path.name) for path in batch.files]
                change.batches += 1
                change.size_bytes += size_bytes
            db.execute("DELETE FROM produced WHERE created_s < ?", (now_s - LEDGER_KEEP_S,))
            dropped_files = self._drop_oldest(db, change, dropped)
            notice_change = self._record_drop(db, dropped, now_s, head_seq) if dropped.batches else _Depth()
        self._telemetry.batches += change.batches
        self._telemetry.size_bytes += change.size_bytes
        self._notices.batches += notice_change.batches
        self._notices.size_bytes += notice_change.size_bytes
        if dropped.batches:
            self._dropped.add(dropped)
            log.warning(
                "spool full: dropped the oldest %d batch(es) (%d samples, %d events)",
                dropped.batches,
                dropped.samples,
                dropped.events,
            )
        for source, target in moves:
            if target.name in dropped_files:
                source.unlink(missing_ok=True)
                dropped_files.discard(target.name)
                continue
            try:
                os.replace(source, target)
            except FileNotFoundError:
                log.warning("report file %s vanished after it was spooled; its data is in the spool", source)
        for name in dropped_files:
            (self.files_dir / name).unlink(missing_ok=True)

    def produced(self) -> list[ProducedBatch]:
        """The ledger, oldest first: every batch taken in over the last week, acknowledged or not."""
        rows = self._db.execute("SELECT batch_id, created_s, samples, events FROM produced ORDER BY created_s")
        return [ProducedBatch(str(row[0]), float(row[1]), int(row[2]), int(row[3])) for row in rows]

    def head(self) -> Spooled | None:
        """The oldest batch, or None when the spool is empty."""
        oldest = self.oldest(max_batches=1, max_bytes=0)
        return oldest[0] if oldest else None

    def oldest(self, *, max_batches: int, max_bytes: int) -> list[Spooled]:
        """The oldest batches, up to max_batches and max_bytes of JSON together (the oldest one whatever its size).

        A drop notice comes only first: one behind the head has never been sent, so it may still grow (see append).
        """
        cursor = self._db.execute(
            "SELECT seq, batch_id, created_s, payload, size_bytes, drop_notice FROM batch ORDER BY seq LIMIT ?",
            (max_batches,),
        )
        rows: list[tuple[Any, ...]] = []
        payload_bytes = 0
        for row in cursor:
            payload_bytes += len(row[3])
            if rows and (payload_bytes > max_bytes or row[5]):
                break
            rows.append(row)
        cursor.close()
        if not rows:
            return []
        files: dict[int, list[Path]] = {int(row[0]): [] for row in rows}
        for start in range(0, len(rows), _QUERY_CHUNK):
            seqs = [int(row[0]) for row in rows[start : start + _QUERY_CHUNK]]
            marks = ",".join("?" * len(seqs))
            for seq, name in self._db.execute(
                f"SELECT seq, name FROM report_file WHERE seq IN ({marks}) ORDER BY name", seqs
            ):
                files[int(seq)].append(self.files_dir / name)
        return [
            Spooled(
                seq=int(row[0]),
                batch_id=str(row[1]),
                created_s=float(row[2]),
                payload_json=str(row[3]),
                size_bytes=int(row[4]),
                drop_notice=bool(row[5]),
                files=tuple(files[int(row[0])]),
            )
            for row in rows
        ]

    def ack(self, *batches: Spooled) -> None:
        """The controller stored (or already had) these batches: delete their report files, then the batches."""
        for batch in batches:
            for path in batch.files:
                path.unlink(missing_ok=True)
        self._remove(batches)

    def set_aside(self, batch: Spooled, *, into: Path) -> None:
        """The controller cannot use the batch: keep its report files in `into` as .bad files, drop the batch."""
        into.mkdir(parents=True, exist_ok=True)
        for path in batch.files:
            if path.exists():
                os.replace(path, into / Path(path.name).with_suffix(".bad"))
        self._remove((batch,))

    def not_spooled(self, paths: Sequence[Path]) -> list[Path]:
        """The paths no spooled batch carries; a carried file still outside the spool is moved in now."""
        carried = self._carried([path.name for path in paths])
        for path in paths:
            if path.name in carried:
                # A crash came between the commit and the move into the spool's folder.
                os.replace(path, self.files_dir / path.name)
        return [path for path in paths if path.name not in carried]

    def return_strays(self, *, to: Path) -> list[Path]:
        """Move files in the spool's folder that no batch carries (a power loss undid their commit) back to `to`."""
        names = sorted(entry.name for entry in os.scandir(self.files_dir) if entry.is_file())
        carried = self._carried(names)
        to.mkdir(parents=True, exist_ok=True)
        returned = []
        for name in names:
            if name not in carried:
                os.replace(self.files_dir / name, to / name)
                returned.append(to / name)
        return returned

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _carried(self, names: Sequence[str]) -> set[str]:
        carried: set[str] = set()
        for start in range(0, len(names), _QUERY_CHUNK):
            chunk = names[start : start + _QUERY_CHUNK]
            marks = ",".join("?" * len(chunk))
            carried.update(
                row[0] for row in self._db.execute(f"SELECT name FROM report_file WHERE name IN ({marks})", chunk)
            )
        return carried

    def _remove(self, batches: Sequence[Spooled]) -> None:
        with self._transaction() as db:
            removed = [
                batch for batch in batches if db.execute("DELETE FROM batch WHERE seq = ?", (batch.seq,)).rowcount
            ]
        for batch in removed:
            depth = self._notices if batch.drop_notice else self._telemetry
            depth.batches -= 1
            depth.size_bytes -= batch.size_bytes
        if self._notices.batches + self._telemetry.batches == 0:
            (free_pages,) = self._db.execute("PRAGMA freelist_count").fetchone()
            if free_pages > _KEEP_FREE_PAGES:
                # Give back the disk a long outage took (execute() would free a single page).
                self._db.executescript("PRAGMA incremental_vacuum;")

    def _drop_oldest(self, db: sqlite3.Connection, change: _Depth, dropped: DropCounts) -> set[str]:
        """Drop the oldest telemetry while over a bound, keeping the newest batch; returns the dropped files' names.

        `change` (batches and bytes this transaction adds) and `dropped` are updated in place.
        """
        last_seq: int | None = None
        cursor = db.execute(
            "SELECT seq, size_bytes, samples, events, first_s, last_s FROM batch WHERE drop_notice = 0 ORDER BY seq"
        )
        for seq, row_bytes, samples, events, first_s, last_s in cursor:
            batches = self._telemetry.batches + change.batches
            size_bytes = self._telemetry.size_bytes + change.size_bytes
            if batches <= 1 or (batches <= self._max_batches and size_bytes <= self._max_bytes):
                break
            dropped.add(DropCounts(1, samples, events, first_s, last_s))
            change.batches -= 1
            change.size_bytes -= row_bytes
            last_seq = seq
        cursor.close()
        if last_seq is None:
            return set()
        files = {name for (name,) in db.execute("SELECT name FROM report_file WHERE seq <= ?", (last_seq,))}
        db.execute("DELETE FROM batch WHERE seq <= ? AND drop_notice = 0", (last_seq,))
        return files

    def _record_drop(self, db: sqlite3.Connection, dropped: DropCounts, now_s: float, head_seq: int | None) -> _Depth:
        """Add the drop to the newest notice never sent (behind `head_seq`), or spool a new one.

        A notice never sent can change without changing what its id stored. Returns the notices' change in depth.
        """
        row = db.execute(
            "SELECT seq, payload, size_bytes FROM batch WHERE drop_notice = 1 AND seq > ? ORDER BY seq DESC LIMIT 1",
            (-1 if head_seq is None else head_seq,),
        ).fetchone()
        if row is None:
            batch_id, time_s, total = str(uuid.uuid4()), now_s, dropped
        else:
            previous = json.loads(row[1])
            event = previous["events"][0]
            batch_id, time_s, total = previous["batch_id"], event["time_s"], DropCounts(**json.loads(event["raw"]))
            total.add(dropped)
        payload_json = json.dumps(_notice_payload(batch_id, self._node, time_s, total), separators=(",", ":"))
        if row is None:
            db.execute(
                "INSERT INTO batch (batch_id, created_s, payload, size_bytes, samples, events, first_s, last_s,"
                " drop_notice) VALUES (?, ?, ?, ?, 0, 1, ?, ?, 1)",
                (batch_id, now_s, payload_json, len(payload_json), time_s, time_s),
            )
            return _Depth(1, len(payload_json))
        db.execute(
            "UPDATE batch SET payload = ?, size_bytes = ? WHERE seq = ?", (payload_json, len(payload_json), row[0])
        )
        return _Depth(0, len(payload_json) - int(row[2]))


def _notice_payload(batch_id: str, node: str, time_s: float, dropped: DropCounts) -> dict[str, Any]:
    def utc(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    message = (
        f"the controller was out of reach longer than the agent's spool holds: dropped the oldest {dropped.batches}"
        f" batch(es) ({dropped.samples} samples, {dropped.events} events) with data from {utc(dropped.first_s)}"
        f" to {utc(dropped.last_s)}"
    )
    event = {
        "time_s": time_s,
        "kind": "telemetry_dropped",
        "severity": "warning",
        "message": message,
        "raw": json.dumps(asdict(dropped)),
    }
    return {"batch_id": batch_id, "node": node, "campaign_id": None, "samples": [], "events": [event]}


def _time_range(payload: dict[str, Any], *, default_s: float) -> tuple[float, float]:
    times = [
        float(item["time_s"])
        for key in ("samples", "events")
        for item in payload.get(key, ())
        if isinstance(item.get("time_s"), int | float) and math.isfinite(item["time_s"])
    ]
    return (min(times), max(times)) if times else (default_s, default_s)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

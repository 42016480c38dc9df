"""Metric names to the small integer ids samples and rollups store, created on first use and cached per engine."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from soak.telemetry.models import MetricName

# Ids of committed rows only: an id created in a transaction that then rolls back must not outlive it. A committed
# id never changes, so the cache needs no invalidation.
_committed: WeakKeyDictionary[Engine, dict[str, int]] = WeakKeyDictionary()
_PENDING = "soak.metric_names.pending"


def metric_ids(*, session: Session, names: Iterable[str]) -> dict[str, int]:
    """The id of every name, creating the missing ones in the session's transaction."""
    found, missing = _known(session, set(names))
    if missing:
        engine = session.get_bind().engine
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # A concurrent ingest may create the same name; its row wins and the select reads its id.
        session.execute(
            insert(MetricName).values([{"name": name} for name in sorted(missing)]).on_conflict_do_nothing()
        )
        created = _select(session, missing)
        _pending(session).update(created)
        found |= created
    return found


def metric_ids_known(*, session: Session, names: Iterable[str]) -> dict[str, int]:
    """The ids of those names that exist, creating none."""
    return _known(session, set(names))[0]


def metric_id(*, session: Session, name: str) -> int | None:
    """The id of a metric name, or None when no sample ever had it."""
    return metric_ids_known(session=session, names=[name]).get(name)


def _known(session: Session, wanted: set[str]) -> tuple[dict[str, int], set[str]]:
    """The ids of wanted names that exist, and the names that do not."""
    committed = _committed.setdefault(session.get_bind().engine, {})
    pending = _pending(session)
    found = {name: committed[name] for name in wanted if name in committed}
    found |= {name: pending[name] for name in wanted - found.keys() if name in pending}
    missing = wanted - found.keys()
    if missing:
        # Not created by this transaction, so whatever it reads was committed by another: safe to cache.
        existing = _select(session, missing)
        committed.update(existing)
        found |= existing
        missing -= existing.keys()
    return found, missing


def _select(session: Session, names: set[str]) -> dict[str, int]:
    statement = select(MetricName.name, MetricName.id).where(MetricName.name.in_(names))
    return {name: id_ for name, id_ in session.execute(statement)}


def _pending(session: Session) -> dict[str, int]:
    """Ids this session's open transaction created: cached when it commits, forgotten when it rolls back."""
    pending: dict[str, int] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {}
        engine = session.get_bind().engine

        def committed(_: Any) -> None:
            _committed.setdefault(engine, {}).update(pending)
            pending.clear()

        event.listen(session, "after_commit", committed)
        event.listen(session, "after_rollback", lambda _: pending.clear())
    return pending

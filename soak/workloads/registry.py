"""Workloads and device backends found through entry points; a plugin that fails to load is skipped."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soak.workloads.backends import Backend
    from soak.workloads.base import Workload

log = logging.getLogger(__name__)


@cache
def _load_group(group: str) -> dict[str, type]:
    loaded: dict[str, type] = {}
    for point in entry_points(group=group):
        try:
            loaded[point.name] = point.load()
        except Exception:
            log.exception("skipping plugin %s from %s: it failed to load", point.name, group)
    return loaded


def workload_names() -> set[str]:
    """Names of every workload that loaded."""
    return set(_load_group("soak.workloads"))


def load_workload(name: str) -> type[Workload]:
    """The workload class registered under `name`."""
    try:
        return _load_group("soak.workloads")[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(sorted(workload_names()))}") from None


def load_backend(name: str) -> type[Backend]:
    """The device backend class registered under `name`."""
    try:
        return _load_group("soak.backends")[name]
    except KeyError:
        known = ", ".join(sorted(_load_group("soak.backends")))
        raise KeyError(f"unknown device backend {name!r}; known: {known}") from None

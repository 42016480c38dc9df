"""Where the members of a collective slot meet: a torch TCP store the controller hosts, one group per slot."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from soak.config import Settings
from soak.workloads.collective import CollectiveGroup

STORE_TIMEOUT = timedelta(minutes=5)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Rendezvous:
    """Fixes each slot's members when the first of them is dispatched, so that all agree on ranks and size."""

    def __init__(self, *, campaign_id: int, settings: Settings) -> None:
        self._campaign_id = campaign_id
        self._host = settings.rendezvous_host
        self._gloo_interface = settings.gloo_interface or ("lo" if _is_loopback(self._host) else None)
        self._store: Any = None  # torch is imported only by campaigns that run collectives
        self._groups: dict[tuple[int, str | None], list[int]] = {}

    def group(
        self, *, slot: int, member: int, node: str | None, members: Callable[[str | None], list[int]]
    ) -> CollectiveGroup | None:
        """This member's place in the group of `slot` (per node, or campaign-wide when `node` is None).

        The group is the devices `members(node)` returns when the slot's first member is dispatched; a device that
        was not among them (it was restarting) sits the slot out: None.
        """
        key = (slot, node)
        if key not in self._groups:
            self._groups = {known: ranks for known, ranks in self._groups.items() if known[0] >= slot - 1}
            self._groups[key] = members(node)
        ranks = self._groups[key]
        if member not in ranks:
            return None
        return CollectiveGroup(
            store_host=self._host,
            store_port=self._port(),
            key=f"campaign{self._campaign_id}/slot{slot}/{node or 'all'}/",
            rank=ranks.index(member),
            world_size=len(ranks),
            gloo_interface=self._gloo_interface,
        )

    def close(self) -> None:
        """Stop serving the store."""
        self._store = None

    def _port(self) -> int:
        if self._store is None:
            import torch.distributed as dist

            self._store = dist.TCPStore(  # type: ignore[attr-defined]
                self._host, 0, None, True, STORE_TIMEOUT, wait_for_workers=False
            )
        return int(self._store.port)

"""A cap on the requests the controller works on at once; the others wait their turn on the event loop.

A sync endpoint needs a worker thread (anyio's 40) and, while its session is open, a database connection (the
pool's 30); its response is serialised in another thread before the session closes. Under a burst every thread
could wait for a connection while every connection waits, with its request, for a thread: the controller stalled
for the pool's 30 s checkout timeout (seen at 25 nodes and 200 reads/s, benchmarks/fleet_scale.py). With fewer
requests admitted than either, a request that holds a connection always gets a thread, and one that needs a
connection always gets one.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send


class AdmissionLimit:
    """ASGI middleware: at most max_requests HTTP requests past this point at once, first come first served."""

    def __init__(self, app: ASGIApp, *, max_requests: int) -> None:
        self.app = app
        self._slots = asyncio.Semaphore(max_requests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self._slots:
            await self.app(scope, receive, send)

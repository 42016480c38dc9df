"""The admission limit: no more requests in the app at once than allowed; the others wait, none is refused."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from soak.admission import AdmissionLimit
from soak.api import create_app
from soak.config import Settings


class Gate:
    """An ASGI app whose requests wait at a gate until released; it records how many were inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.arrived = asyncio.Event()
        self.open = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        self.arrived.set()
        await self.open.wait()
        self.inside -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_requests_past_the_limit_wait_their_turn() -> None:
    async def six_requests(gate: Gate) -> tuple[int, list[int]]:
        transport = httpx.ASGITransport(app=AdmissionLimit(gate, max_requests=2))
        async with httpx.AsyncClient(transport=transport, base_url="http://controller") as client:
            requests = [asyncio.create_task(client.get("/")) for _ in range(6)]
            await gate.arrived.wait()
            for _ in range(20):  # let every request reach the limit or the gate
                await asyncio.sleep(0)
            inside_before_opening = gate.inside
            gate.open.set()
            responses = await asyncio.gather(*requests)
        return inside_before_opening, [response.status_code for response in responses]

    gate = Gate()
    inside_before_opening, statuses = asyncio.run(six_requests(gate))

    assert inside_before_opening == 2
    assert gate.most_inside == 2
    assert statuses == [200] * 6


def test_the_controller_admits_what_its_settings_say() -> None:
    app = create_app(Settings(database_url="sqlite://", max_concurrent_requests=3), run_scheduler=False)

    [limit] = [middleware for middleware in app.user_middleware if middleware.cls is AdmissionLimit]

    assert limit.kwargs == {"max_requests": 3}

"""The agent's HTTP client for the controller."""

from __future__ import annotations

from typing import Any

import httpx

from soak.nodes.schemas import NodeIn


class ControllerRejected(RuntimeError):
    """The controller refused a request for a reason a retry will not fix."""


class BatchInvalid(ValueError):
    """The controller cannot use this batch at all (its envelope is malformed); retrying would not help."""


class BatchesUnsupported(RuntimeError):
    """The controller predates requests of several batches: send them one by one."""


class UnknownToController(RuntimeError):
    """The controller does not know this node (e.g. a fresh database): register again."""


class ControllerClient:
    """Register the node and deliver telemetry batches."""

    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def register(self, name: str, node: NodeIn) -> None:
        """PUT the node and its devices."""
        response = self._http.put(f"/api/v1/nodes/{name}", json=node.model_dump(mode="json"))
        if response.status_code >= 400:
            raise ControllerRejected(f"registration refused ({response.status_code}): {response.text}")

    def send(self, batch_json: str) -> dict[str, Any]:
        """POST one batch, already JSON; raises httpx errors for the caller to retry later."""
        result: dict[str, Any] = _answer(self._post("/api/v1/telemetry", batch_json))
        return result

    def send_batches(self, batch_jsons: list[str]) -> list[dict[str, Any]]:
        """POST several batches, each already JSON, in one request; one outcome per batch, in their order."""
        response = self._post("/api/v1/telemetry/batches", '{"batches":[' + ",".join(batch_jsons) + "]}")
        if response.status_code in (404, 405):
            raise BatchesUnsupported(f"{response.status_code} for POST /api/v1/telemetry/batches")
        results: list[dict[str, Any]] = _answer(response)["results"]
        return results

    def _post(self, path: str, body: str) -> httpx.Response:
        return self._http.post(path, content=body.encode(), headers={"Content-Type": "application/json"})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def _answer(response: httpx.Response) -> Any:
    """The JSON of a telemetry answer, or the error that says what the agent should do about it."""
    if response.status_code == 409:
        raise UnknownToController(response.text)
    if response.status_code in (413, 422):
        raise BatchInvalid(response.text)
    if response.status_code in (401, 403):
        raise ControllerRejected(f"batch refused ({response.status_code}): {response.text}")
    response.raise_for_status()
    return response.json()

"""The agent's HTTP client for the controller."""

from __future__ import annotations

from typing import Any

import httpx

from soak.nodes.schemas import NodeIn


class ControllerRejected(RuntimeError):
    """The controller refused a request for a reason a retry will not fix."""


class BatchInvalid(ValueError):
    """The controller cannot use this batch at all (its envelope is malformed); retrying would not help."""


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
        response = self._http.post(
            "/api/v1/telemetry", content=batch_json.encode(), headers={"Content-Type": "application/json"}
        )
        if response.status_code == 409:
            raise UnknownToController(response.text)
        if response.status_code in (413, 422):
            raise BatchInvalid(response.text)
        if response.status_code in (401, 403):
            raise ControllerRejected(f"batch refused ({response.status_code}): {response.text}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

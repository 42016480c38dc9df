"""Protections around every request: a body size cap (chunked bodies too), valid Unicode, CORS, a production check."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soak.admission import AdmissionLimit
from soak.auth.service import has_operator_token
from soak.config import Settings
from soak.plan import field_path
from soak.telemetry.limits import IngestGuard


class ProductionUnready(RuntimeError):
    """Production mode without any way to administer the controller."""


class RequestBodyGuard:
    """Answers 413 to a body over the limit, whether Content-Length announces it or chunks reveal it, and 422 to
    JSON text no store keeps (NUL, unpaired UTF-16 surrogates), which would otherwise fail deep in a write."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send)
            return
        # Read here, up to the limit, and hand the app the body whole: no route sees a byte past the limit.
        chunks: list[bytes] = []
        size_bytes = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size_bytes += len(chunk)
            if size_bytes > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        where = unstorable_field(whole)
        if where is not None:
            problem = f"{where}: holds a NUL character or an unpaired UTF-16 surrogate; send valid Unicode text"
            await _answer(send, 422, {"detail": "invalid request", "problems": [problem]})
            return
        body: Message | None = {"type": "http.request", "body": whole, "more_body": False}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        detail = f"the request body is larger than {self.max_body_bytes} bytes (SOAK_MAX_BODY_BYTES); send less"
        await _answer(send, 413, {"detail": detail})


async def _answer(send: Send, status_code: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def unstorable_field(body: bytes) -> str | None:
    """The path of the first JSON string (or key) holding NUL or an unpaired surrogate; `(body)` for the document."""
    # Only JSON escapes carry them (raw bytes that are not UTF-8 fail parsing anyway): most bodies skip the parse.
    lowered = body.lower()
    if b"\\ud" not in lowered and b"\\u0000" not in lowered:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers that

    def walk(value: Any, path: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
        if isinstance(value, str):
            return None if _storable(value) else path
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and not _storable(key):
                return path
            found = walk(item, (*path, key))
            if found is not None:
                return found
        return None

    found = walk(document, ())
    return None if found is None else field_path(found) if found else "(body)"


def _storable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def guard_app(app: FastAPI, settings: Settings) -> None:
    """Apply the settings' limits to an app; in production, refuse to build one nobody can administer."""
    if settings.environment == "production" and settings.api_token is None:
        with app.state.sessions() as session:
            if not has_operator_token(session=session):
                raise ProductionUnready(
                    "production mode needs an operator token: create one with `soak token create --role operator` "
                    "(it works on the store directly), or set SOAK_API_TOKEN to at least 32 random characters"
                )
    app.state.ingest_guard = IngestGuard.from_settings(settings)
    app.add_middleware(RequestBodyGuard, max_body_bytes=settings.max_body_bytes)
    # Outside the body guard: a request waiting its turn has read nothing and holds no thread or connection.
    app.add_middleware(AdmissionLimit, max_requests=settings.max_concurrent_requests)
    if settings.cors_origins:
        # Bearer tokens travel in a header, never in cookies: no credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

"""Protections around every request: a cap on body size (chunked bodies too), CORS, and production's start check."""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soak.auth.service import has_operator_token
from soak.config import Settings
from soak.telemetry.limits import IngestGuard


class ProductionUnready(RuntimeError):
    """Production mode without any way to administer the controller."""


class BodySizeLimit:
    """Answers 413 to a body over the limit, whether Content-Length announces it or chunks reveal it."""

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
        body: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        detail = f"the request body is larger than {self.max_body_bytes} bytes (SOAK_MAX_BODY_BYTES); send less"
        content = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": content})


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
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Bearer tokens travel in a header, never in cookies: no credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

"""The controller: a FastAPI app with routers under /api/v1, /healthz and /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from soak import __version__
from soak.auth.views import router as auth_router
from soak.campaigns.views import router as campaigns_router
from soak.config import Settings
from soak.db import make_engine, session_factory
from soak.metrics import ControllerMetrics
from soak.nodes.views import router as nodes_router
from soak.plan import PlanError, field_path
from soak.report.views import router as reports_router
from soak.scheduler.supervisor import Supervisor
from soak.security import guard_app
from soak.telemetry.maintenance import MaintenanceLoop
from soak.telemetry.views import router as telemetry_router


def create_app(settings: Settings, *, run_scheduler: bool = True) -> FastAPI:
    """Build the controller; run_scheduler also starts campaigns and telemetry maintenance (off in API-only tests)."""
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        supervisor = Supervisor(sessions=sessions, settings=settings) if run_scheduler else None
        maintenance = (
            MaintenanceLoop(
                sessions=sessions,
                interval_s=settings.rollup_interval_s,
                raw_retention_days=settings.raw_retention_days,
            )
            if run_scheduler
            else None
        )
        if supervisor is not None:
            supervisor.start()
        if maintenance is not None:
            maintenance.start()
        app.state.supervisor = supervisor
        yield
        if maintenance is not None:
            maintenance.stop()
        if supervisor is not None:
            supervisor.stop()
        engine.dispose()

    app = FastAPI(title="soak controller", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.metrics = ControllerMetrics(sessions)
    app.include_router(campaigns_router)
    app.include_router(nodes_router)
    app.include_router(telemetry_router)
    app.include_router(reports_router)
    app.include_router(auth_router)
    guard_app(app, settings)

    @app.exception_handler(PlanError)
    async def plan_error(_: Request, error: PlanError) -> JSONResponse:
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"detail": "invalid plan", "problems": error.problems},
        )

    @app.exception_handler(RequestValidationError)
    async def request_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{field_path(tuple(item['loc'][1:]) if item['loc'][:1] == ('body',) else tuple(item['loc']))}: "
            f"{str(item['msg']).removeprefix('Value error, ')}"
            for item in error.errors()
        ]
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"detail": "invalid request", "problems": problems},
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers and the store is reachable."""
        with sessions() as session:
            session.connection()
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus exposition of the controller's own metrics."""
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

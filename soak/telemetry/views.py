"""Telemetry ingest route."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from soak.deps import ERRORS, IngestDep, SessionDep, check_node
from soak.telemetry import service
from soak.telemetry.limits import IngestGuard
from soak.telemetry.schemas import IngestResult, TelemetryBatch

router = APIRouter(prefix="/api/v1", tags=["telemetry"], responses=ERRORS)


@router.post("/telemetry")
def ingest(request: Request, session: SessionDep, principal: IngestDep, batch: TelemetryBatch) -> IngestResult:
    """Store a batch once (retries with the same batch_id are no-ops); bad items are listed, good ones kept."""
    check_node(request=request, session=session, principal=principal, node=batch.node)
    guard: IngestGuard = request.app.state.ingest_guard
    try:
        result = service.ingest(session=session, batch=batch, guard=guard)
    except service.BatchRefused as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{error}; nothing was stored") from None
    except service.UnknownNode as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except service.UnknownCampaign as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    request.app.state.metrics.record_ingest(result)
    return result

"""Telemetry ingest route."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from soak.deps import SessionDep, Writer
from soak.telemetry import service
from soak.telemetry.schemas import IngestResult, TelemetryBatch

router = APIRouter(prefix="/api/v1", tags=["telemetry"])


@router.post("/telemetry", dependencies=[Writer])
def ingest(request: Request, session: SessionDep, batch: TelemetryBatch) -> IngestResult:
    """Store a batch once (retries with the same batch_id are no-ops); bad items are listed, good ones kept."""
    try:
        result = service.ingest(session=session, batch=batch)
    except service.UnknownNode as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except service.UnknownCampaign as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    request.app.state.metrics.record_ingest(result)
    return result

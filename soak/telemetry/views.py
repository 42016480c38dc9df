"""Telemetry ingest routes: one batch per request, or several."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from soak.deps import ERRORS, IngestDep, SessionDep, check_node
from soak.telemetry import service
from soak.telemetry.limits import IngestGuard
from soak.telemetry.schemas import BatchOutcome, IngestResult, IngestResults, TelemetryBatch, TelemetryBatches

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


@router.post("/telemetry/batches")
def ingest_batches(
    request: Request, session: SessionDep, principal: IngestDep, body: TelemetryBatches
) -> IngestResults:
    """Store several batches in one transaction, each once by its own batch_id; one outcome per batch, in order.

    A batch that cannot be taken (malformed, too large, an unknown campaign) is refused alone, the others stored.
    """
    guard: IngestGuard = request.app.state.ingest_guard
    try:
        batches = service.read_batches(items=body.batches, guard=guard)
    except service.BatchRefused as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{error}; nothing was stored") from None
    for node in sorted({batch.node for batch in batches if isinstance(batch, TelemetryBatch)}):
        check_node(request=request, session=session, principal=principal, node=node)
    try:
        outcomes = service.ingest_batches(session=session, batches=batches, guard=guard)
    except service.UnknownNode as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    results: list[BatchOutcome] = []
    for batch, outcome in zip(batches, outcomes, strict=True):
        if isinstance(outcome, IngestResult):
            request.app.state.metrics.record_ingest(outcome)
            results.append(BatchOutcome(**outcome.model_dump()))
            continue
        problems = outcome.problems if isinstance(outcome, service.BatchRefused) else [str(outcome)]
        results.append(
            BatchOutcome(batch_id=batch.batch_id if isinstance(batch, TelemetryBatch) else None, refused=problems)
        )
    return IngestResults(results=results)

"""Admin: the dead-letter store of ingestion (events that failed after their retries), and replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict

from indexer.ledger import EventLedger
from services.api.deps import AdminDep

router = APIRouter(prefix="/admin/dlq", tags=["admin"], dependencies=[AdminDep])


class DeadEvent(BaseModel):
    event_id: str
    item_id: str
    op: str
    version: int
    attempts: int
    error: str | None


class DeadLetters(BaseModel):
    count: int
    counts: dict[str, int]
    events: list[DeadEvent]


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default

    event_ids: list[str] | None = None  # none: every dead event


def _ledger(request: Request) -> EventLedger:
    ledger: EventLedger = request.app.state.ingest_ledger
    return ledger


@router.get("", response_model=DeadLetters)
def dead_letters(request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> DeadLetters:
    """Dead-lettered events with their errors, and the ledger's counts per state."""
    ledger = _ledger(request)
    counts = ledger.counts()
    events = [
        DeadEvent(
            event_id=e.event_id, item_id=e.item_id, op=e.op, version=e.version, attempts=e.attempts, error=e.error
        )
        for e in ledger.dead(limit)
    ]
    return DeadLetters(count=counts["dead"], counts=counts, events=events)


@router.post("/replay")
def replay(request: Request, body: Annotated[ReplayIn | None, Body()] = None) -> dict[str, int]:
    """Queue dead events again (after their cause is fixed)."""
    count = _ledger(request).replay(body.event_ids if body else None)
    request.app.state.ingest.wake()
    return {"replayed": count}

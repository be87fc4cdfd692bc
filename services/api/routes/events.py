"""Content events in: HTTP (one event or a batch), S3 notifications; and where an event stands."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from indexer.events import MAX_EVENTS_PER_REQUEST
from indexer.ledger import LedgerEvent
from indexer.s3_source import S3EventHandler
from indexer.service import IngestService

router = APIRouter(prefix="/v1/events", tags=["ingestion"])


class AcceptedEvent(BaseModel):
    index: int
    event_id: str
    item_id: str
    version: int
    status: str = "queued"


class RejectedEvent(BaseModel):
    index: int
    field: str
    message: str
    status: str = "rejected"


class AcceptResponse(BaseModel):
    accepted: list[AcceptedEvent]
    rejected: list[RejectedEvent]


class EventStatus(BaseModel):
    event_id: str
    item_id: str
    op: str
    version: int
    source: str
    state: str = Field(description="queued, processing, indexed, superseded (changed nothing) or dead")
    attempts: int = Field(description="failed attempts so far: 0 for an event applied at the first try")
    error: str | None = Field(description="why the last attempt failed, or why the event was superseded")
    accepted_at: float = Field(description="epoch seconds")
    updated_at: float = Field(description="epoch seconds")


def _status(ev: LedgerEvent) -> EventStatus:
    return EventStatus(
        event_id=ev.event_id,
        item_id=ev.item_id,
        op=ev.op,
        version=ev.version,
        source=ev.source,
        state=ev.state.value,
        attempts=ev.attempts,
        error=ev.error,
        accepted_at=ev.accepted_at,
        updated_at=ev.updated_at,
    )


async def _json_body(request: Request) -> Any:
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, [{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}]) from None
    except RecursionError:
        raise HTTPException(422, [{"loc": ["body"], "msg": "nested too deeply", "type": "json_invalid"}]) from None


@router.post(
    "/content",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AcceptResponse,
    responses={413: {"description": "body too large"}, 422: {"description": "no valid event"}},
)
async def post_content_events(request: Request) -> AcceptResponse:
    """One event (`{"op": "upsert", "item": {...}}`), a list of events, or `{"events": [...]}`.

    Answers 202 once the accepted events are durably recorded; each event has its own status, so a bad
    event does not block the good ones. Ops: `upsert` (whole item), `patch` (`id` + `fields`), `delete` (`id`).
    """
    data = await _json_body(request)
    events = data.get("events") if isinstance(data, dict) and "events" in data else data
    events = events if isinstance(events, list) else [events]
    if not events:
        raise HTTPException(422, [{"loc": ["body", "events"], "msg": "no events", "type": "value_error"}])
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"{len(events)} events; at most {MAX_EVENTS_PER_REQUEST} per request",
        )
    service: IngestService = request.app.state.ingest
    report = service.accept(events)
    response = AcceptResponse(
        accepted=[AcceptedEvent(**asdict(a)) for a in report.accepted],
        rejected=[RejectedEvent(**asdict(p)) for p in report.rejected],
    )
    if not report.accepted:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", *p.field.replace("]", "").replace("[", ".").split(".")],
                    "msg": p.message,
                    "type": "value_error",
                }
                for p in report.rejected
            ],
        )
    return response


@router.post("/s3", status_code=status.HTTP_202_ACCEPTED)
async def post_s3_notification(request: Request) -> dict[str, Any]:
    """An S3 event notification for a bucket of item files: as S3 or MinIO webhooks send it, or inside an SNS
    delivery (confirm an SNS subscription by opening its SubscribeURL). S3's test event is answered with no objects."""
    data = await _json_body(request)
    if not isinstance(data, dict):
        raise HTTPException(422, [{"loc": ["body"], "msg": "expected an object with Records", "type": "value_error"}])
    handler: S3EventHandler = request.app.state.s3_events
    outcomes = await run_in_threadpool(handler.handle, data)  # it reads the objects: not on the event loop
    return {"objects": [asdict(o) for o in outcomes]}


@router.get("/{event_id}", response_model=EventStatus)
def get_event(event_id: str, request: Request) -> EventStatus:
    """Whether an event is queued, processing, indexed, superseded or dead-lettered (with its error)."""
    ev = request.app.state.ingest.status(event_id)
    if ev is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return _status(ev)


@router.get("", response_model=list[EventStatus])
def events_of_item(item_id: str, request: Request) -> list[EventStatus]:
    """The latest events of one item, newest first."""
    return [_status(e) for e in request.app.state.ingest_ledger.by_item(item_id)]

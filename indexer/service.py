"""Accepting content: what the HTTP handlers, the S3 handler and the bulk CLI call.

An event is answered as accepted only once the ledger holds it. Waking a worker is best effort: if the
broker is down, the reconciler finds the events in the ledger and wakes one later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery

from indexer.celery_app import DRAIN
from indexer.events import DeleteEvent, EventProblem, PatchEvent, UpsertEvent, parse_events
from indexer.ledger import EventLedger, LedgerEvent, NewEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    index: int
    event_id: str
    item_id: str
    version: int


@dataclass(frozen=True)
class AcceptReport:
    accepted: list[Accepted]
    rejected: list[EventProblem]
    queued_signal: bool


def to_new_event(ev: UpsertEvent | PatchEvent | DeleteEvent, source: str) -> NewEvent:
    if isinstance(ev, UpsertEvent):
        return NewEvent(ev.item_id, "upsert", ev.version, {"item": ev.item}, source)
    if isinstance(ev, PatchEvent):
        return NewEvent(ev.id, "patch", ev.version, {"fields": ev.fields}, source)
    return NewEvent(ev.id, "delete", ev.version, {}, source)


class IngestService:
    def __init__(self, ledger: EventLedger, celery: Celery) -> None:
        self._ledger = ledger
        self._celery = celery

    def accept(self, raw_events: Sequence[Any], source: str = "api") -> AcceptReport:
        good, bad = parse_events(raw_events)
        recorded = self._ledger.append([to_new_event(ev, source) for _, ev in good])
        accepted = [Accepted(i, r.event_id, r.item_id, r.version) for (i, _), r in zip(good, recorded, strict=True)]
        return AcceptReport(accepted, bad, self.wake() if accepted else False)

    def accept_new(self, events: Sequence[NewEvent]) -> list[LedgerEvent]:
        recorded = self._ledger.append(events)
        if recorded:
            self.wake()
        return recorded

    def wake(self) -> bool:
        try:
            self._celery.send_task(DRAIN, retry=False)
        except Exception as exc:
            log.warning("could not signal a worker (%s); the reconciler will", exc)
            return False
        return True

    def status(self, event_id: str) -> LedgerEvent | None:
        return self._ledger.get(event_id)


def encode_items_as_events(lines: Sequence[str]) -> list[dict[str, Any]]:
    """JSONL lines of items (or of events, if they carry "op") -> events."""
    out = []
    for line in lines:
        if line.strip():
            data = json.loads(line)
            out.append(data if isinstance(data, dict) and "op" in data else item_event(data))
    return out


def item_event(item: Any) -> dict[str, Any]:
    """The upsert event of an item given bare: its own `version`, when it has one, orders it (else the
    server assigns one), as the same item sent as an event with that version would be."""
    event: dict[str, Any] = {"op": "upsert", "item": item}
    version = item.get("version") if isinstance(item, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > 0:
        event["version"] = version
    return event

"""The ingestion pipeline: plan (order-safe, idempotent) -> source of truth -> embed -> engine -> ledger.

Write order matters for crash safety: the raw item goes to the source of truth, then to the engine, and only
then are the item's new state and the events' outcomes committed to the ledger, together. A crash anywhere
before that commit leaves the events to be re-driven; re-processing rewrites the same content and skips the
embedding (the engine already holds the same content hash), so it changes nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded

from indexer.ledger import EventLedger, EventState, ItemState, LedgerEvent, Outcome
from indexer.settings import IndexerSettings
from indexer.source_of_truth import SourceOfTruth, SourceRecord
from indexer.text import compose_text
from services.core.domain import Item
from services.core.embedding import Embedder
from services.core.engines.base import Document, SearchEngine, Vector
from services.core.errors import ItemValidationError, TransientEngineError

log = logging.getLogger(__name__)


class PermanentEventError(Exception):
    """This event can never succeed as it is (e.g. a patch for an unknown item): dead-letter it now."""


def is_transient(exc: BaseException) -> bool:
    """Failures of a dependency rather than of the event: wait and retry, never dead-letter."""
    if isinstance(exc, TransientEngineError | ConnectionError | TimeoutError | SoftTimeLimitExceeded):
        return True
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return True
    name = type(exc).__name__
    return name in {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    }


@dataclass
class Plan:
    """What a batch will change: new item states, and each event's outcome once those are written."""

    states: dict[str, ItemState] = field(default_factory=dict)
    outcomes: dict[str, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    failed: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    version: int | None
    embedder: Embedder


@dataclass(frozen=True)
class BatchReport:
    indexed: int = 0
    superseded: int = 0
    dead: int = 0
    retried: int = 0
    embedded: int = 0
    transient_error: str | None = None

    def __add__(self, other: BatchReport) -> BatchReport:
        return BatchReport(
            self.indexed + other.indexed,
            self.superseded + other.superseded,
            self.dead + other.dead,
            self.retried + other.retried,
            self.embedded + other.embedded,
            other.transient_error or self.transient_error,
        )


class IngestPipeline:
    def __init__(
        self,
        settings: IndexerSettings,
        ledger: EventLedger,
        engine: SearchEngine,
        embedder: Embedder,
        source: SourceOfTruth,
        targets: Callable[[], list[Target]] | None = None,
    ) -> None:
        """`targets`: the index versions every write goes to, each with the model its vectors come from
        (the live version, plus a version being rebuilt by a reindex). Default: the live version only."""
        self._settings = settings
        self._pipe = settings.pipeline
        self._ledger = ledger
        self._engine = engine
        self._embedder = embedder
        self._source = source
        self._alias = settings.index_alias
        self._targets = targets or self._live_target

    def _live_target(self) -> list[Target]:
        live = self._engine.live_version(self._alias)
        return [Target(live.version if live else None, self._embedder)]

    # ---- planning: pure, no I/O but the state lookup ------------------------------------------------

    def plan(self, events: list[LedgerEvent]) -> Plan:
        plan = Plan()
        current = self._ledger.item_states(e.item_id for e in events)
        by_item: dict[str, list[LedgerEvent]] = defaultdict(list)
        for ev in events:
            by_item[ev.item_id].append(ev)
        for item_id, evs in by_item.items():
            state = current.get(item_id)
            changed = False
            resyncs = {e.event_id for e in evs if e.op == "resync"}  # a repair, not a state of the item
            for ev in sorted(evs, key=lambda e: (e.version, e.seq)):
                if ev.op == "resync":
                    # Rewrite the current state to every target (a reindex repairs its new version this way).
                    plan.states[item_id] = state or ItemState(item_id, 0, True, None, None)
                    plan.outcomes[item_id].append(Outcome(ev.event_id, EventState.INDEXED))
                    continue
                if state is not None and ev.version <= state.version:
                    # Older than what is applied, or a replay of it: nothing to do. Said, since a client
                    # mixing its own small versions with the server's (microseconds) would otherwise wonder.
                    why = f"version {ev.version} is not newer than the item's applied version {state.version}"
                    plan.outcomes[item_id].append(Outcome(ev.event_id, EventState.SUPERSEDED, why))
                    continue
                try:
                    state = self._apply(item_id, state, ev)
                except PermanentEventError as exc:
                    plan.failed.append(Outcome(ev.event_id, EventState.DEAD, str(exc), count_attempt=True))
                    continue
                changed = True
                if ev.op in ("upsert", "delete"):
                    # A whole new state: what this batch applied before it is never written nor served (a
                    # patch keeps part of what it patches, so that one stays indexed), as if it came late.
                    replaced = f"replaced in the same batch by version {ev.version} ({ev.op})"
                    plan.outcomes[item_id] = [
                        Outcome(o.event_id, EventState.SUPERSEDED, replaced)
                        if o.state is EventState.INDEXED and o.event_id not in resyncs
                        else o
                        for o in plan.outcomes[item_id]
                    ]
                plan.outcomes[item_id].append(Outcome(ev.event_id, EventState.INDEXED))
            if changed and state is not None:
                plan.states[item_id] = state
        return plan

    def _apply(self, item_id: str, state: ItemState | None, ev: LedgerEvent) -> ItemState:
        if ev.op == "delete":
            return ItemState(item_id, ev.version, True, None, None)
        if ev.op == "upsert":
            raw = dict(ev.payload["item"])
        elif state is None or state.deleted or state.item is None:
            raise PermanentEventError(f"patch for item {item_id!r}, which does not exist (or was deleted)")
        else:
            raw = {**state.item, **ev.payload["fields"]}
        raw["version"] = ev.version
        try:
            item = Item.parse(raw)
            self._settings.catalog.validate_item(item)
        except ItemValidationError as exc:
            raise PermanentEventError(f"invalid item: {exc}") from exc
        return ItemState(item_id, ev.version, False, item.content_hash, item.to_json())

    # ---- executing -----------------------------------------------------------------------------------

    def process(self, events: list[LedgerEvent]) -> BatchReport:
        """Process claimed events. Transient failures release the whole batch for a later retry."""
        if not events:
            return BatchReport()
        try:
            return self._process(events)
        except Exception as exc:
            if is_transient(exc):
                log.warning("dependency unavailable, %d events wait: %s", len(events), exc)
                self._ledger.release(
                    [
                        Outcome(
                            e.event_id,
                            EventState.QUEUED,
                            f"waiting: {exc}",
                            retry_after_s=self._pipe.reconcile_every_s,
                        )
                        for e in events
                    ]
                )
                return BatchReport(retried=len(events), transient_error=str(exc))
            if len(events) > 1:
                # Isolate a poison event: halve the batch until the failure has a single owner.
                mid = len(events) // 2
                return self.process(events[:mid]) + self.process(events[mid:])
            (ev,) = events
            log.exception("event %s failed", ev.event_id)
            give_up = ev.attempts + 1 >= self._pipe.max_attempts
            outcome = Outcome(
                ev.event_id,
                EventState.DEAD if give_up else EventState.QUEUED,
                f"{type(exc).__name__}: {exc}",
                count_attempt=True,
                retry_after_s=0 if give_up else min(2.0**ev.attempts, self._pipe.max_backoff_s),
            )
            self._ledger.release([outcome])
            return BatchReport(dead=int(give_up), retried=int(not give_up))

    def _process(self, events: list[LedgerEvent]) -> BatchReport:
        plan = self.plan(events)
        live = {i: s for i, s in plan.states.items() if not s.deleted}
        gone = [i for i, s in plan.states.items() if s.deleted]

        # source of truth first: a reindex rebuilds from it
        self._source.put_many(
            [SourceRecord(st.item_id, st.version, st.deleted, st.item) for st in plan.states.values()]
        )

        embedded, engine_failures = 0, {}
        vectors_by_model: dict[str, dict[str, Vector]] = {}
        for target in self._targets():
            n, failures = self._index(live, target, vectors_by_model.setdefault(target.embedder.model_id, {}))
            embedded += n
            engine_failures.update(failures)
            if gone:
                result = self._engine.delete(self._alias, gone, version=target.version)
                engine_failures.update({f.id: f.reason for f in result.failed if f.reason != "not found"})

        states = [s for i, s in plan.states.items() if i not in engine_failures]
        outcomes = list(plan.failed)
        for item_id, item_outcomes in plan.outcomes.items():
            if item_id in engine_failures:
                outcomes += [
                    Outcome(
                        o.event_id,
                        EventState.QUEUED,
                        f"engine: {engine_failures[item_id]}",
                        count_attempt=True,
                        retry_after_s=2.0,
                    )
                    for o in item_outcomes
                ]
            else:
                outcomes += item_outcomes
        # An engine rejection of the same item again and again must end in the dead-letter store.
        attempts = {e.event_id: e.attempts for e in events}
        outcomes = [
            Outcome(o.event_id, EventState.DEAD, o.error, True)
            if o.state is EventState.QUEUED and attempts[o.event_id] + 1 >= self._pipe.max_attempts
            else o
            for o in outcomes
        ]
        self._ledger.commit(states, outcomes)
        tally: dict[EventState, int] = defaultdict(int)
        for o in outcomes:
            tally[o.state] += 1
        return BatchReport(
            tally[EventState.INDEXED],
            tally[EventState.SUPERSEDED],
            tally[EventState.DEAD],
            tally[EventState.QUEUED],
            embedded,
        )

    def _index(
        self, live: dict[str, ItemState], target: Target, vectors: dict[str, Vector]
    ) -> tuple[int, dict[str, str]]:
        """Embed (once per model) and write the items whose content the target version does not hold yet."""
        if not live:
            return 0, {}
        held = {d.item.id: d.content_hash for d in self._engine.get(self._alias, list(live), version=target.version)}
        todo = [Item.model_validate(s.item) for i, s in live.items() if held.get(i) != s.hash]
        if not todo:
            return 0, {}
        fresh = [it for it in todo if it.id not in vectors]
        if fresh:
            texts = [compose_text(it, self._pipe.embed_fields, self._pipe.embed_max_chars) for it in fresh]
            vectors.update(zip((it.id for it in fresh), target.embedder.embed(texts), strict=True))
        docs = [Document(it, vectors[it.id]) for it in todo]
        result = self._engine.upsert(self._alias, docs, version=target.version)
        return len(fresh), {f.id: f.reason for f in result.failed}

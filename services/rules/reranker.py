"""The re-ranking stage: the active business rules applied to the scored list, in a fixed order.

    1. availability   drop unavailable items
    2. hide           drop hidden items
    3. boost, bury    +/- amount on the score, normalised to [0, 1] over the request (min-max)
    4. freshness      score x ((1 - weight) + weight * 0.5 ** (age_days / half_life_days))
       -> re-sorted by score
    5. mmr            the top K re-chosen by maximal marginal relevance over item vectors
    6. diversity      at most N items per value of a field in the top K (the others wait below K)
    7. pin            items put at fixed positions; last, so that no other rule moves them

Rules that remove items come first (nothing is shaped around an item that will go), score changes before
the re-sort, list shaping after it, and pins last: a pinned position is a promise. Every rule that touched
an item is in its `effects` (explain), with how much: the score change for score rules, positions moved up
(negative: down) for the others.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from services.core.domain import CatalogSchema, Item
from services.core.filters import Filter, Or, Terms, parse_filter
from services.rules.matching import field_values, filter_includes, matches, query_matches
from services.rules.model import ORDER, Rule
from services.rules.store import RuleStore
from services.search.types import (
    Candidate,
    FusedCandidate,
    RankedCandidate,
    RuleEffect,
    ScoredCandidate,
    SearchQuery,
    VectorLookup,
    candidate_vectors,
)

log = logging.getLogger(__name__)

ItemLookup = Callable[[Sequence[str]], Mapping[str, Item]]


@dataclass(frozen=True)
class CompiledRule:
    """A stored rule with its filters parsed against the catalog schema."""

    rule: Rule
    context: Filter | None
    target: Filter | None

    def applies(self, query: SearchQuery, now: datetime) -> bool:
        return self.applies_to(query.text, query.filter, now)

    def applies_to(self, text: str | None, flt: Filter | None, now: datetime) -> bool:
        """Active, and in scope: `text` None (no query: similar items, recommendations) meets only rules
        without a query."""
        r = self.rule
        if not r.active_at(now):
            return False
        if r.when.query is not None and (text is None or not query_matches(r.when.query, r.when.match, text)):
            return False
        return self.context is None or filter_includes(flt, self.context)

    def targets(self, item: Item) -> bool:
        if self.rule.items:
            return item.id in self.rule.items
        return self.target is not None and matches(self.target, item)


@dataclass
class _Entry:
    scored: ScoredCandidate
    score: float
    effects: list[RuleEffect] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.scored.id

    @property
    def item(self) -> Item:
        return self.scored.item


def _retrieved_nowhere(item: Item) -> ScoredCandidate:
    """A pinned item the retrievers did not return: no retriever score or rank (rank 0)."""
    return ScoredCandidate(FusedCandidate(Candidate(item.id, item, {}, {}), 0.0, 0), 0.0, 0)


class RulesReranker:
    def __init__(
        self,
        store: RuleStore,
        catalog: CatalogSchema,
        *,
        items: ItemLookup | None = None,
        vectors: VectorLookup | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._items = items
        self._vectors = vectors
        self._clock = clock
        self._lock = threading.Lock()
        self._compiled: tuple[int, list[CompiledRule]] = (-1, [])

    @property
    def name(self) -> str:
        rules = self._compiled[1]
        now = self._clock()
        active = sum(1 for c in rules if c.rule.active_at(now))
        return f"rules({active} active of {len(rules)}; order: {' > '.join(ORDER)})"

    def compiled(self) -> list[CompiledRule]:
        """The stored rules, parsed; re-read when the store's revision changed (a write by any process)."""
        revision = self._store.revision()
        if revision != self._compiled[0]:
            with self._lock:
                if revision != self._compiled[0]:
                    revision, rules = self._store.snapshot()
                    self._compiled = (revision, [c for r in rules if (c := self._compile(r)) is not None])
        return self._compiled[1]

    def _compile(self, rule: Rule) -> CompiledRule | None:
        try:
            context = parse_filter(rule.when.filter, self._catalog, "when.filter") if rule.when.filter else None
            target = parse_filter(rule.target, self._catalog, "target") if rule.target else None
        except ValueError as exc:  # the catalog schema changed under a stored rule
            log.error("rule %s (%s) skipped: %s", rule.id, rule.name, exc)
            return None
        return CompiledRule(rule, context, target)

    def hidden(self, text: str | None, filter: Filter | None) -> Filter | None:
        """The items the active hide rules take out of an answer to `text` under `filter`, as one filter
        (None: none): `HiddenItems`, for suggest, similar items and recommendations. Searches drop them in
        `run`, with the other rules. The rules' ids make one `terms` clause, whatever the number of rules."""
        now = self._clock()
        rules = [c for c in self.compiled() if c.rule.action == "hide" and c.applies_to(text, filter, now)]
        ids = tuple(dict.fromkeys(i for c in rules for i in c.rule.items))
        parts: list[Filter] = [Terms("id", ids)] if ids else []
        parts += [c.target for c in rules if not c.rule.items and c.target is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def active(self, query: SearchQuery) -> list[CompiledRule]:
        now = self._clock()
        return [c for c in self.compiled() if c.applies(query, now)]

    def run(self, query: SearchQuery, candidates: Sequence[ScoredCandidate]) -> list[RankedCandidate]:
        rules = self.active(query)
        if not rules:
            return [RankedCandidate(c, c.score, rank) for rank, c in enumerate(candidates, start=1)]
        by_action: dict[str, list[CompiledRule]] = {a: [] for a in ORDER}
        for c in rules:
            by_action[c.rule.action].append(c)

        scores = np.array([c.score for c in candidates], dtype=np.float64)
        low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
        span = high - low
        entries = [
            _Entry(c, (c.score - low) / span if span > 1e-12 else 1.0) for c in candidates
        ]  # scores normalised to [0, 1]: the scale boost, bury and freshness work on

        if by_action["availability"]:
            entries = [e for e in entries if e.item.available]
        for c in by_action["hide"]:
            entries = [e for e in entries if not c.targets(e.item)]
        for action in ("boost", "bury"):
            for c in by_action[action]:
                amount = float(c.rule.amount or 0.0) * (1 if action == "boost" else -1)
                for e in entries:
                    if c.targets(e.item):
                        e.score += amount
                        e.effects.append(RuleEffect(c.rule.id, action, amount, f"{c.rule.name}: score {amount:+g}"))
        now = self._clock()
        for c in by_action["freshness"]:
            self._freshness(c, entries, now)
        entries.sort(key=lambda e: -e.score)  # stable: ties keep the scored order
        for c in by_action["mmr"]:
            entries = self._mmr(c, entries)
        for c in by_action["diversity"]:
            entries = self._diversity(c, entries)
        for c in by_action["pin"]:
            entries = self._pin(c, entries, query)
        return [RankedCandidate(e.scored, e.score, rank, tuple(e.effects)) for rank, e in enumerate(entries, start=1)]

    # ---- actions ---------------------------------------------------------------------------------------

    def _freshness(self, c: CompiledRule, entries: list[_Entry], now: datetime) -> None:
        half_life = float(c.rule.half_life_days or 1.0)
        weight = float(c.rule.weight or 0.0)
        for e in entries:
            published = e.item.published_at
            if published is None:
                continue  # an unknown age is neither fresh nor stale: the score stays
            age = max((now - published).total_seconds() / 86400, 0.0)
            factor = (1 - weight) + weight * math.pow(0.5, age / half_life)
            new = e.score * factor
            if new != e.score:
                e.effects.append(
                    RuleEffect(c.rule.id, "freshness", round(new - e.score, 6), f"{c.rule.name}: age {age:.0f} d")
                )
                e.score = new

    def _moved(self, c: CompiledRule, before: Sequence[_Entry], after: Sequence[_Entry], what: str) -> None:
        """Record, on every item a list-shaping rule moved, from where to where."""
        old = {e.id: i for i, e in enumerate(before, start=1)}
        for new, e in enumerate(after, start=1):
            was = old.get(e.id)
            if was is not None and was != new:
                e.effects.append(RuleEffect(c.rule.id, c.rule.action, float(was - new), f"{what}: {was} -> {new}"))

    def _mmr(self, c: CompiledRule, entries: list[_Entry]) -> list[_Entry]:
        top_k = min(int(c.rule.top_k or 10), len(entries))
        pool = entries[: min(len(entries), 3 * top_k)]
        if top_k < 2 or self._vectors is None:
            return entries
        found = candidate_vectors([e.scored.candidate for e in pool], self._vectors)
        dim = next((v.shape[0] for v in found.values()), 0)
        if dim == 0:
            return entries
        vecs = np.zeros((len(pool), dim), dtype=np.float32)
        for i, e in enumerate(pool):
            v = found.get(e.id)
            if v is not None:
                norm = float(np.linalg.norm(v))
                vecs[i] = v / norm if norm > 0 else v
        sims = vecs @ vecs.T
        rel = np.array([e.score for e in pool])
        span = float(rel.max() - rel.min())
        rel = (rel - rel.min()) / span if span > 1e-12 else np.ones(len(pool))
        lam = float(c.rule.lambda_ if c.rule.lambda_ is not None else 0.7)
        chosen: list[int] = []
        left = list(range(len(pool)))
        while left and len(chosen) < top_k:
            penalty = sims[np.ix_(left, chosen)].max(axis=1) if chosen else np.zeros(len(left))
            gains = lam * rel[left] - (1 - lam) * penalty
            best = left[int(np.argmax(gains))]  # argmax: the first of equals, i.e. the better scored
            chosen.append(best)
            left.remove(best)
        picked = {pool[i].id for i in chosen}
        after = [pool[i] for i in chosen] + [e for e in entries if e.id not in picked]
        self._moved(c, entries, after, f"{c.rule.name}: mmr over vectors (lambda {lam:g})")
        return after

    def _diversity(self, c: CompiledRule, entries: list[_Entry]) -> list[_Entry]:
        fld = str(c.rule.field)
        cap = int(c.rule.max_per or 1)
        top_k = int(c.rule.top_k or 10)
        counts: dict[str, int] = {}
        head: list[_Entry] = []
        waiting: list[_Entry] = []
        rest = iter(entries)
        for e in rest:
            values = {str(v) for v in field_values(e.item, fld)}
            if any(counts.get(v, 0) >= cap for v in values):
                waiting.append(e)
            else:
                for v in values:
                    counts[v] = counts.get(v, 0) + 1
                head.append(e)
            if len(head) >= top_k:
                break
        after = head + waiting + list(rest)
        what = f"{c.rule.name}: at most {cap} per {fld} in the top {top_k}"
        if len(head) < min(top_k, len(entries)):
            # Every other candidate shares a value already at the cap (a list field can corner the greedy
            # fill): the list stays whole, and the explanation says where the cap stops holding.
            what += f" (met for the first {len(head)}: no other candidate fits)"
        self._moved(c, entries, after, what)
        return after

    def _pin(self, c: CompiledRule, entries: list[_Entry], query: SearchQuery) -> list[_Entry]:
        position = int(c.rule.position or 1)
        present = {e.id: e for e in entries}
        missing = [i for i in c.rule.items if i not in present]
        fetched = self._items(missing) if missing and self._items is not None else {}
        before = list(entries)
        pinned: list[_Entry] = []
        for item_id in c.rule.items:
            entry = present.get(item_id)
            if entry is None:
                item = fetched.get(item_id)
                # an item the search's filter excludes, or unavailable, is not forced into the list
                if item is None or not matches(query.filter, item) or not item.available:
                    continue
                entry = _Entry(_retrieved_nowhere(item), 0.0)
                entry.effects.append(RuleEffect(c.rule.id, "pin", 0.0, f"{c.rule.name}: added (not retrieved)"))
            pinned.append(entry)
        if not pinned:
            return entries
        ids = {e.id for e in pinned}
        after = [e for e in entries if e.id not in ids]
        at = min(position - 1, len(after))
        # a pinned item takes the score of the item it displaces, so scores stay in order
        for e in pinned:
            e.score = after[at].score if at < len(after) else (after[-1].score if after else e.score)
        after[at:at] = pinned
        self._moved(c, before, after, f"{c.rule.name}: pinned at {position}")
        return after

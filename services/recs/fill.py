"""The last stage: an answer shorter than k is filled with the catalog's most popular items.

Why: the sources know only what the periodic job learnt from interactions. Before its first run (a new
install, a catalog just loaded) trending is empty, so a cold-start user would get nothing; and when deletions
or a narrow filter leave the sources short, the guard returns fewer than k. The catalog itself still holds
items: its `popularity` field (any number or date field can be named) orders them, through the engine, with
availability, the request's filter and the exclusions applied inside the query.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.core.engines.base import SearchEngine
from services.recs.sources import engine_filter
from services.recs.types import Candidate, RankedCandidate, RecContext, SourceHit

POPULAR = "popular"


class CatalogFill:
    def __init__(self, engine: SearchEngine | None, alias: str, field: str = "popularity") -> None:
        self._engine = engine
        self._alias = alias
        self.field = field

    def run(self, ranked: Sequence[RankedCandidate], k: int, context: RecContext) -> list[RankedCandidate]:
        """`ranked` (the guard's answer) and, when it holds fewer than k, the catalog's items by `field`,
        highest first, that are not excluded nor in it already; scored below the last one, in that order."""
        out = list(ranked)
        if self._engine is None or len(out) >= k:
            return out
        taken = {r.candidate.item_id for r in out} | context.profile.excluded
        flt, asked = engine_filter(context.filter, taken, k - len(out))
        floor = min((r.score for r in out), default=0.0)
        for hit in self._engine.top_by_field(self._alias, self.field, k=asked, filter=flt):
            if len(out) >= k:
                break
            if hit.id in taken:
                continue
            taken.add(hit.id)
            rank = len(out) - len(ranked) + 1
            out.append(RankedCandidate(Candidate(hit.id, -1, {POPULAR: SourceHit(hit.score, rank)}), floor - rank))
        return out

"""The re-ranking stage. Issue 7 puts business rules (pin, hide, boost, bury, diversity) here; until then
no rule exists and the scored order is final."""

from __future__ import annotations

from collections.abc import Sequence

from services.search.types import RankedCandidate, ScoredCandidate, SearchQuery


class NoopReranker:
    """Applies no rule: the final score and order are the scorer's."""

    @property
    def name(self) -> str:
        return "none(no rules)"

    def run(self, query: SearchQuery, candidates: Sequence[ScoredCandidate]) -> list[RankedCandidate]:
        return [RankedCandidate(c, c.score, rank) for rank, c in enumerate(candidates, start=1)]

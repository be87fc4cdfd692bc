"""The scoring stage. Issue 7 puts a LambdaRank model here; until then the fused order passes through."""

from __future__ import annotations

from collections.abc import Sequence

from services.search.types import FusedCandidate, ScoredCandidate, SearchQuery


class PassthroughScorer:
    """Scores each candidate with its fused score and keeps the fused order."""

    @property
    def name(self) -> str:
        return "passthrough(fused order)"

    def run(self, query: SearchQuery, candidates: Sequence[FusedCandidate]) -> list[ScoredCandidate]:
        return [ScoredCandidate(c, c.score, rank) for rank, c in enumerate(candidates, start=1)]

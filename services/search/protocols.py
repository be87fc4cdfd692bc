"""The roles of the search pipeline. Each stage is a small class with a `name` (shown in explain) and one
typed `run()`; any class with the right shape fills a role, no inheritance needed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.search.types import (
    Candidate,
    CandidateSet,
    FusedCandidate,
    RankedCandidate,
    ScoredCandidate,
    SearchQuery,
)


@runtime_checkable
class Retriever(Protocol):
    """Candidate generation: up to `query.depth` items for the query, with `query.filter` applied inside."""

    @property
    def name(self) -> str: ...

    def run(self, query: SearchQuery) -> list[Candidate]: ...


@runtime_checkable
class CandidateSource(Protocol):
    """Candidate generation as a whole: every retriever's list merged by item id (`CandidateGenerator`), or
    the same after a feedback pass (`FeedbackGenerator`). `names`: the retrievers a query may ask for."""

    @property
    def name(self) -> str: ...

    @property
    def names(self) -> tuple[str, ...]: ...

    def run(self, query: SearchQuery) -> CandidateSet: ...


@runtime_checkable
class Fuser(Protocol):
    """Merges the retrievers' lists (carried in each candidate's scores and ranks) into one ordered list."""

    @property
    def name(self) -> str: ...

    def run(self, candidates: Sequence[Candidate]) -> list[FusedCandidate]: ...


@runtime_checkable
class Scorer(Protocol):
    """The scoring stage (issue 7: LambdaRank over features). Returns the candidates ordered by its score."""

    @property
    def name(self) -> str: ...

    def run(self, query: SearchQuery, candidates: Sequence[FusedCandidate]) -> list[ScoredCandidate]: ...


@runtime_checkable
class Reranker(Protocol):
    """The re-ranking stage (issue 7: business rules, diversity). May reorder or drop candidates."""

    @property
    def name(self) -> str: ...

    def run(self, query: SearchQuery, candidates: Sequence[ScoredCandidate]) -> list[RankedCandidate]: ...

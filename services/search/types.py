"""The typed objects that pass between the stages of a search, defined in one place.

    SearchQuery ──Retriever──> Candidate ──Fuser──> FusedCandidate ──Scorer──> ScoredCandidate
                ──Reranker──> RankedCandidate ──(page, facets)──> SearchResult

Each later object holds the one before it, so the final list still carries every stage's score and rank
(what `explain` shows, and what the ranking stage reads as features).
"""

from __future__ import annotations

import os
import random
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.core.domain import Item, ItemLabel
from services.core.engines.base import Hit, Vector
from services.core.filters import Filter

Mode = Literal["hybrid", "keyword", "vector"]
KEYWORD = "keyword"
VECTOR = "vector"


# Query ids' own generator (seeded from the OS), reseeded in a forked child: neither a library that seeds the
# global generator nor a forked worker can make ids repeat.
_QUERY_IDS = random.Random()
os.register_at_fork(after_in_child=_QUERY_IDS.seed)


def new_query_id() -> str:
    """A random (version 4) UUID. Its bits come from a generator in memory, not from `os.urandom`: a query id
    must be unique, not secret (its client quotes it back), and the system call behind `uuid4` cost a
    keystroke 30 µs on average here, up to 0.25 ms."""
    return str(uuid.UUID(int=_QUERY_IDS.getrandbits(128), version=4))


def normalise_text(text: str) -> str:
    """NFC, whitespace runs collapsed, ends trimmed: 'Ame\\u0301lie  ' and 'Amélie' are one query."""
    return " ".join(unicodedata.normalize("NFC", text).split())


# Letters that NFKD does not split into a base letter and an accent, folded as the engines' ASCII folding does.
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "þ": "th", "ð": "d", "ı": "i"})


def fold(text: str) -> str:
    """Text as the engines' analyzers compare it: accents dropped, case folded ("Misérables" -> "miserables",
    "Søren" -> "soren"). For matching only; what is shown keeps its accents."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in text if not unicodedata.combining(c)).translate(_LETTERS)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What every stage sees: the text, the filter applied inside every retriever, and how deep to retrieve.

    `legs` names the retrievers to run (None: all of them). `query_id` ties served results to the
    interactions and feature logs that come back later. `expansion`: weighted words the keyword leg adds to
    the text (pseudo-relevance feedback sets them; the other stages read `text` only).
    """

    text: str
    filter: Filter | None = None
    depth: int = 200
    legs: tuple[str, ...] | None = None
    query_id: str = field(default_factory=new_query_id)
    expansion: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item some retriever proposed, with each retriever's raw score and 1-based rank, by its name.

    `held` is the item, or the engine's hit that builds it when first read: a query's few hundred candidates
    are mostly never read (scoring reads a window, the page shows ten), so none is parsed until then.
    """

    id: str
    held: Item | Hit
    scores: Mapping[str, float]
    ranks: Mapping[str, int]

    @property
    def item(self) -> Item:
        held = self.held
        return held if isinstance(held, Item) else held.item

    @property
    def popularity(self) -> float | None:
        """The item's popularity, without building the item when the engine gave it with the hit."""
        return self.held.popularity

    @property
    def label(self) -> ItemLabel:
        """The item's title, brand and availability, without building the item when the engine gave them."""
        held = self.held
        return held.label if isinstance(held, Hit) else ItemLabel.of(held)

    @property
    def vector(self) -> Vector | None:
        """The item's vector if the engine returned it with the hit, else None (ask the engine for it)."""
        held = self.held
        return held.vector if isinstance(held, Hit) else None

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.ranks)

    def merged(self, other: Candidate) -> Candidate:
        """The same item seen by another retriever: one candidate with both retrievers' scores and ranks."""
        return Candidate(self.id, self.held, {**self.scores, **other.scores}, {**self.ranks, **other.ranks})


# Stored vectors by id, for the ids given (the engine's `get_vectors` on the served index); missing ids absent.
VectorLookup = Callable[[Sequence[str]], Mapping[str, Vector]]


def candidate_vectors(cands: Sequence[Candidate], lookup: VectorLookup) -> dict[str, Vector]:
    """The candidates' vectors: those that came with their hits (OpenSearch fetches them with the source) as
    they are, and only the others asked of `lookup`, in one call."""
    found = {c.id: v for c in cands if (v := c.vector) is not None}
    missing = [c.id for c in cands if c.id not in found]
    if missing:
        found.update(lookup(missing))
    return found


@dataclass(frozen=True, slots=True)
class FusedCandidate:
    """A candidate with the fused score and its rank in the fused list."""

    candidate: Candidate
    score: float
    rank: int

    @property
    def id(self) -> str:
        return self.candidate.id

    @property
    def item(self) -> Item:
        return self.candidate.item


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    """A fused candidate with the scoring stage's score, rank and the features it was scored on."""

    fused: FusedCandidate
    score: float
    rank: int
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.fused.id

    @property
    def item(self) -> Item:
        return self.fused.item

    @property
    def candidate(self) -> Candidate:
        return self.fused.candidate


@dataclass(frozen=True, slots=True)
class RuleEffect:
    """What one re-ranking rule did to an item: e.g. rule 'pin-123', action 'pin', moved from rank 7 to 1."""

    rule: str
    action: str
    delta: float = 0.0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """The final order: the re-ranker's score and rank, and every rule that moved the item."""

    scored: ScoredCandidate
    score: float
    rank: int
    effects: tuple[RuleEffect, ...] = ()

    @property
    def id(self) -> str:
        return self.scored.id

    @property
    def item(self) -> Item:
        return self.scored.item

    @property
    def fused(self) -> FusedCandidate:
        return self.scored.fused

    @property
    def candidate(self) -> Candidate:
        return self.scored.fused.candidate


# Why a leg's hits went unused, as a code a client or a dashboard can count (`LegReport.skipped` says it in words,
# naming the typed text): the suggester held no query vector yet; its held vector found nothing above the floor
# a moment ago; the leg ran past its budget; the prefix leg found enough that typos needed no forgiving.
SkipReason = Literal["no_query_vector", "vector_found_nothing", "over_budget", "prefix_found_enough"]


@dataclass(frozen=True, slots=True)
class LegReport:
    """How one retriever did for a query: hits found and time taken, or why its hits were not used (in words,
    and as a code). `held`: its hits come from an earlier search of the same query, index state unchanged."""

    name: str
    hits: int
    ms: float
    skipped: str | None = None
    reason: SkipReason | None = None
    held: bool = False


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """The merged output of all retrievers: one candidate per item, in first-seen order."""

    candidates: list[Candidate]
    legs: tuple[LegReport, ...]


@dataclass(frozen=True, slots=True)
class FacetValue:
    value: str
    count: int


@dataclass(frozen=True, slots=True)
class Explain:
    """How a result came about, for the whole query (per-item scores live on the RankedCandidates)."""

    legs: tuple[LegReport, ...]
    fuser: str
    scorer: str
    reranker: str
    depth: int
    timings_ms: Mapping[str, float]
    # how candidates were generated: the retrievers, or a feedback pass over them
    retrieval: str = ""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of the final list. `total` counts the whole list: a page past the end is empty, no error."""

    query: SearchQuery
    total: int
    page: int
    size: int
    items: list[RankedCandidate]
    facets: Mapping[str, list[FacetValue]]
    explain: Explain

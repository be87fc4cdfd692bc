"""Candidate generation: the keyword (BM25) and vector (k-NN) retrievers, and the generator that runs them
concurrently and merges their lists. Both speak the engine contract; no engine query language in here."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

from rapidfuzz.distance import OSA

from services.core.embedding import Embedder
from services.core.engines.base import Hit, SearchEngine, Vector
from services.core.errors import ValidationError
from services.search.protocols import Retriever
from services.search.types import KEYWORD, VECTOR, Candidate, CandidateSet, LegReport, SearchQuery, fold

_WORD = re.compile(r"\w+", re.UNICODE)


def candidates_from_hits(name: str, hits: Sequence[Hit]) -> list[Candidate]:
    """An engine's hits as one retriever's candidates: its score and 1-based rank under its name."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for hit in hits:
        if hit.id in seen:  # an engine should not repeat an id; if one does, the first (best) wins
            continue
        seen.add(hit.id)
        out.append(Candidate(hit.id, hit, {name: float(hit.score)}, {name: len(out) + 1}))
    return out


def typos(words: Sequence[str], title: str) -> int:
    """Edits between the typed words and the title words nearest each (accents and case aside)."""
    title_words = _WORD.findall(fold(title)) or [""]
    return sum(min(OSA.distance(w, t) for t in title_words) for w in words)


def closest_titles(hits: Sequence[Hit], text: str) -> list[Hit]:
    """Typo-tolerant title hits, fewest edits first, in the engine's order otherwise: an engine may score
    every fuzzy match alike ("avaatr" is one transposition from Avatar and two edits from The Aviator)."""
    words = _WORD.findall(fold(text))
    edits = [typos(words, h.item.title) for h in hits]
    order = sorted(range(len(hits)), key=lambda i: (edits[i], i))
    return [hits[i] for i in order]


class KeywordRetriever:
    """BM25 over the text fields, with per-field boosts (None: the engine's defaults).

    `typo_fallback`: when no word of the query is in the index ("godfahter", "avaatr"), a typo is likelier than
    a topic nobody wrote about, and BM25 has nothing to rank; the titles (or brands) that hold every word within the
    engines' edit distance (suggest's typo-tolerant match, popularity prior included) stand in. A query with
    any hit never pays for it."""

    def __init__(
        self,
        engine: SearchEngine,
        alias: str,
        *,
        boosts: Mapping[str, float] | None = None,
        name: str = KEYWORD,
        typo_fallback: bool = False,
    ) -> None:
        self._engine = engine
        self._alias = alias
        self._boosts = dict(boosts) if boosts else None
        self._name = name
        self._typo_fallback = typo_fallback

    @property
    def name(self) -> str:
        return self._name

    def run(self, query: SearchQuery) -> list[Candidate]:
        hits = self._engine.keyword_search(
            self._alias,
            query.text,
            k=query.depth,
            boosts=self._boosts,
            filter=query.filter,
            terms=dict(query.expansion) if query.expansion else None,
        )
        if not hits and self._typo_fallback and not query.expansion:
            # every word completed (the trailing space): each one typo tolerant, none taken as a prefix
            hits = self._engine.prefix_suggest(self._alias, query.text + " ", k=query.depth, filter=query.filter)
            hits = closest_titles(hits, query.text)
        return candidates_from_hits(self._name, hits)


class VectorRetriever:
    """k-NN over item vectors; the query text is embedded by the (usually caching) embedder."""

    def __init__(self, engine: SearchEngine, alias: str, embedder: Embedder, *, name: str = VECTOR) -> None:
        self._engine = engine
        self._alias = alias
        self._embedder = embedder
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def embed(self, text: str) -> Vector:
        (vector,) = self._embedder.embed([text])
        out: Vector = vector
        return out

    def search(self, query: SearchQuery, vector: Vector) -> list[Candidate]:
        """k-NN for a given vector (e.g. one moved by feedback), with the query's depth and filter."""
        hits = self._engine.vector_search(self._alias, vector, k=query.depth, filter=query.filter)
        return candidates_from_hits(self._name, hits)

    def run(self, query: SearchQuery) -> list[Candidate]:
        return self.search(query, self.embed(query.text))


class CandidateGenerator:
    """Runs the chosen retrievers at the same time (one thread each) and merges their lists by item id.

    The merged list keeps first-seen order (first retriever's order, then new items from the next); the
    fuser decides the real order. A failing retriever fails the query: a silent half result would look fine
    and be wrong.
    """

    def __init__(self, retrievers: Sequence[Retriever], executor: Executor | None = None) -> None:
        checked: dict[str, Retriever] = {}
        for r in retrievers:
            if r.name in checked:
                raise ValueError(f"two retrievers are named {r.name!r}")
            checked[r.name] = r
        self._retrievers = checked
        self._executor = executor

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._retrievers)

    @property
    def name(self) -> str:
        return f"retrievers({', '.join(self.names)})"

    def _chosen(self, legs: tuple[str, ...] | None) -> list[Retriever]:
        if legs is None:
            return list(self._retrievers.values())
        unknown = [leg for leg in legs if leg not in self._retrievers]
        if unknown or not legs:
            raise ValidationError(
                "mode",
                f"this service has the retrievers {', '.join(self.names) or 'none'}; "
                f"asked for {', '.join(legs) or 'none'}",
            )
        return [self._retrievers[leg] for leg in legs]

    def run(self, query: SearchQuery) -> CandidateSet:
        chosen = self._chosen(query.legs)

        def timed(retriever: Retriever) -> tuple[list[Candidate], float]:
            start = time.perf_counter()
            found = retriever.run(query)
            return found, (time.perf_counter() - start) * 1000

        if self._executor is None or len(chosen) == 1:
            results = [timed(r) for r in chosen]
        else:
            # The others go to the pool first; the first runs here meanwhile (one thread hand-off fewer).
            futures = [self._executor.submit(timed, r) for r in chosen[1:]]
            results = [timed(chosen[0]), *(f.result() for f in futures)]
        merged: dict[str, Candidate] = {}
        for found, _ in results:
            for c in found:
                seen = merged.get(c.id)
                merged[c.id] = c if seen is None else seen.merged(c)
        legs = tuple(
            LegReport(r.name, len(found), round(ms, 3)) for r, (found, ms) in zip(chosen, results, strict=True)
        )
        return CandidateSet(list(merged.values()), legs)

"""Pseudo-relevance feedback: a second retrieval pass steered by the first pass's best candidates.

    SearchQuery ──CandidateGenerator──> first pass ──Fuser──> top documents
        ├─ keyword leg: the query's words plus the top documents' characteristic terms (RM3-like expansion)
        └─ vector leg:  the query vector moved towards the top documents' vectors (Rocchio)
    ──> the second pass's candidates, under the same leg names, for the fuser and the scorer as usual.

Why: on short topical queries the first hits share vocabulary the query lacks ("flow" for "boundary layer"),
and both BM25 and the query vector recall more relevant documents once they use it. It costs a second
retrieval pass and one `get` of the top documents' vectors, so it is a setting (`TRAWL_SEARCH__FEEDBACK__ENABLED`).

The expansion reads the candidates' own text (title and body, already on every candidate) with document
frequencies counted over the first pass's best `pool` candidates: no collection statistics, so it behaves the
same on any engine. The query's filter goes into both legs of the second pass, as in the first.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import cast

import numpy as np
import snowballstemmer
from pydantic import BaseModel, Field

from services.core.engines.base import SearchEngine, Vector
from services.search.protocols import CandidateSource, Fuser
from services.search.retrievers import KeywordRetriever, VectorRetriever
from services.search.types import KEYWORD, VECTOR, Candidate, CandidateSet, FusedCandidate, LegReport, SearchQuery

_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)  # words of 3+ letters: numbers and scraps make poor expansions

# The classic SMART/Lucene core plus words common in any abstract: they carry no topic worth expanding with.
_STOP_WORDS_TEXT = """
    a an and are as at be been being but by can could did do does for from had has have how if in into is it
    its itself may might must no not of on or shall should so such than that the their them then there these
    they this those to was were what when where which while who whom why will with would about above after again
    against all any because before below between both during each few further here more most other our out over
    own same some very you your we us i me my he him his she her also only just upon under using used use
    obtained given found show shown paper present presented results result method methods case cases two one
    three new well made make first second number several various"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


class FeedbackSettings(BaseModel):
    """`TRAWL_SEARCH__FEEDBACK__*`. Off by default: it doubles retrieval work for every query."""

    enabled: bool = False
    # Expansion terms for the keyword leg, taken from the first pass's top `docs` fused candidates.
    terms: int = Field(20, ge=0, le=50)
    docs: int = Field(10, ge=1, le=100)
    # Candidates whose text gives the document frequencies that weigh the expansion terms (their idf).
    pool: int = Field(100, ge=1, le=1000)
    # RM3's interpolation: the expanded keyword query is query_weight × the query's words (each 1/n of it) plus
    # (1 - query_weight) × the feedback terms (each by its feedback weight, summing to 1). The engine scores
    # each added term by its weight (`keyword_search(terms=...)`), so a feedback term counts as much as it was
    # fed back, not as much as a query word.
    query_weight: float = Field(0.5, gt=0, le=1)
    # Rocchio: new vector = query + weight × mean of the top `vector_docs` candidates' vectors (normalised).
    vector_docs: int = Field(5, ge=0, le=100)
    vector_weight: float = Field(1.0, ge=0)


@dataclasses.dataclass(frozen=True, slots=True)
class _Analysed:
    stems: tuple[str, ...]
    surface: dict[str, str]  # stem -> the first word seen with it (what goes into the expanded query)


class TermStats:
    """Stems and surface words of texts, remembered (bounded) since the same top documents come back often."""

    def __init__(self, max_texts: int = 50_000) -> None:
        self._stemmer = snowballstemmer.stemmer("english")
        self._stems: dict[str, str] = {}
        self._texts: dict[str, _Analysed] = {}
        self._max = max_texts
        self._lock = threading.Lock()

    def stem(self, word: str) -> str:
        found = self._stems.get(word)
        if found is None:
            with self._lock:
                found = self._stems[word] = self._stemmer.stemWord(word)
        return found

    def analyse(self, text: str) -> _Analysed:
        found = self._texts.get(text)
        if found is not None:
            return found
        stems: list[str] = []
        surface: dict[str, str] = {}
        for word in _WORD.findall(text.lower()):
            if word in STOP_WORDS:
                continue
            s = self.stem(word)
            stems.append(s)
            surface.setdefault(s, word)
        result = _Analysed(tuple(stems), surface)
        with self._lock:
            if len(self._texts) >= self._max:
                for key in list(self._texts)[: self._max // 2]:
                    del self._texts[key]
            self._texts[text] = result
        return result

    def query_stems(self, text: str) -> set[str]:
        return {self.stem(w) for w in re.findall(r"\w+", text.lower())}


def expansion_terms(
    stats: TermStats, query: str, top: Sequence[Candidate], pool: Sequence[Candidate], count: int
) -> list[tuple[str, float]]:
    """RM3-like feedback terms: Σ over the top documents of tf/length, times idf over the pool; the query's
    own stems and stop words excluded; ties by the word. Returns (surface word, weight), best first; the
    weights sum to 1."""
    if count == 0 or not top:
        return []
    texts = {c.id: stats.analyse(f"{c.item.title}\n{c.item.body}") for c in pool}
    for c in top:
        texts.setdefault(c.id, stats.analyse(f"{c.item.title}\n{c.item.body}"))
    df: Counter[str] = Counter()
    for c in pool:
        df.update(set(texts[c.id].stems))
    n = max(len(pool), 1)
    exclude = stats.query_stems(query)
    weight: dict[str, float] = {}
    surface: dict[str, str] = {}
    for c in top:
        doc = texts[c.id]
        if not doc.stems:
            continue
        for s, tf in Counter(doc.stems).items():
            if s in exclude:
                continue
            weight[s] = weight.get(s, 0.0) + tf / len(doc.stems)
            surface.setdefault(s, doc.surface[s])
    scored = sorted(
        ((w * math.log1p(n / max(df.get(s, 0), 1)), surface[s]) for s, w in weight.items()),
        key=lambda x: (-x[0], x[1]),
    )
    kept = [(word, w) for w, word in scored[:count] if w > 0]
    total = sum(w for _, w in kept)
    return [(word, w / total) for word, w in kept] if total > 0 else []


def rocchio(query: Vector, docs: Sequence[Vector], weight: float) -> Vector:
    """The query vector moved towards the mean of the documents' vectors, unit length (cosine search)."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if not docs or weight == 0:
        return q
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    centre = np.mean(np.vstack([np.asarray(d, dtype=np.float32).reshape(-1) for d in docs]), axis=0)
    centre = centre / max(float(np.linalg.norm(centre)), 1e-12)
    moved = q + np.float32(weight) * centre
    out: Vector = (moved / max(float(np.linalg.norm(moved)), 1e-12)).astype(np.float32)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Feedback:
    """What the first pass fed back: shown in explain."""

    terms: tuple[str, ...]
    vector_docs: int


class FeedbackGenerator:
    """Candidate generation with pseudo-relevance feedback: a first hybrid pass (the plain generator), its
    top fused candidates, then both legs again with the expanded query and the moved query vector.

    The candidates are the second pass's, under the legs' own names, so fusion, features and explain read
    them as any other retrieval. A leg the query did not ask for (`query.legs`) stays off in both passes.
    """

    def __init__(
        self,
        first: CandidateSource,
        fuser: Fuser,
        keyword: KeywordRetriever,
        vector: VectorRetriever | None,
        engine: SearchEngine,
        alias: str,
        settings: FeedbackSettings,
        *,
        executor: Executor | None = None,
        stats: TermStats | None = None,
    ) -> None:
        self._first = first
        self._fuser = fuser
        self._keyword = keyword
        self._vector = vector
        self._engine = engine
        self._alias = alias
        self._settings = settings
        self._executor = executor
        self._stats = stats or TermStats()
        self._last = threading.local()  # per thread: requests run side by side on one generator

    @property
    def last(self) -> Feedback | None:
        """The feedback of this thread's last run (for a caller that wants the terms: tests, the evaluation)."""
        return cast(Feedback | None, getattr(self._last, "value", None))

    @property
    def names(self) -> tuple[str, ...]:
        return self._first.names

    @property
    def name(self) -> str:
        s = self._settings
        return (
            f"feedback(first pass: {self._first.name}; rm3 terms={s.terms} from top {s.docs}; "
            f"rocchio top {s.vector_docs} weight {s.vector_weight:g})"
        )

    def run(self, query: SearchQuery) -> CandidateSet:
        s = self._settings
        start = time.perf_counter()
        first = self._first.run(query)
        fused = self._fuser.run(first.candidates)
        legs = set(query.legs) if query.legs is not None else set(self.names)
        expanded = self.expand(query, fused) if KEYWORD in legs else None
        moved = self.move(query, fused) if VECTOR in legs and self._vector is not None else None
        feedback_ms = (time.perf_counter() - start) * 1000 - sum(leg.ms for leg in first.legs)

        def timed_keyword() -> tuple[list[Candidate], float]:
            t = time.perf_counter()
            assert expanded is not None
            found = self._keyword.run(dataclasses.replace(query, expansion=expanded))
            return found, (time.perf_counter() - t) * 1000

        def timed_vector() -> tuple[list[Candidate], float]:
            t = time.perf_counter()
            assert moved is not None and self._vector is not None
            found = self._vector.search(query, moved)
            return found, (time.perf_counter() - t) * 1000

        jobs = [(KEYWORD, timed_keyword)] if expanded is not None else []
        if moved is not None:
            jobs.append((VECTOR, timed_vector))
        if self._executor is not None and len(jobs) > 1:
            future = self._executor.submit(jobs[1][1])
            results = [jobs[0][1](), future.result()]
        else:
            results = [job() for _, job in jobs]
        merged: dict[str, Candidate] = {}
        for found, _ in results:
            for c in found:
                seen = merged.get(c.id)
                merged[c.id] = c if seen is None else seen.merged(c)
        terms = tuple(word for word, _ in expanded) if expanded is not None else ()
        self._last.value = Feedback(terms, s.vector_docs if moved is not None else 0)
        reports = [LegReport(f"{leg.name} (first pass)", leg.hits, leg.ms, leg.skipped) for leg in first.legs]
        reports.append(LegReport("feedback", len(terms), round(max(feedback_ms, 0.0), 3), None))
        reports += [
            LegReport(name, len(found), round(ms, 3)) for (name, _), (found, ms) in zip(jobs, results, strict=True)
        ]
        # Legs with nothing to feed back (an empty first pass) keep their first-pass hits.
        for leg in first.legs:
            if leg.name not in {name for name, _ in jobs}:
                for c in first.candidates:
                    if leg.name in c.ranks and c.id not in merged:
                        merged[c.id] = c
        return CandidateSet(list(merged.values()), tuple(reports))

    def expand(self, query: SearchQuery, fused: Sequence[FusedCandidate]) -> tuple[tuple[str, float], ...] | None:
        """The feedback terms with the weights the keyword leg gives them (None: nothing to expand from).

        In the engine's query each of the n query words scores once, so the query part weighs n: a feedback
        term of weight w gets n × w × (1 - λ) / λ, which makes the two parts λ and 1 - λ of the whole."""
        s = self._settings
        if not fused:
            return None
        cands = [f.candidate for f in fused]
        terms = expansion_terms(self._stats, query.text, cands[: s.docs], cands[: s.pool], s.terms)
        n = max(len([w for w in re.findall(r"\w+", query.text.lower()) if w not in STOP_WORDS]), 1)
        scale = n * (1 - s.query_weight) / s.query_weight
        return tuple((word, w * scale) for word, w in terms)

    def move(self, query: SearchQuery, fused: Sequence[FusedCandidate]) -> Vector | None:
        """The Rocchio query vector (None: no vector leg, or nothing to move towards)."""
        s = self._settings
        if self._vector is None or not fused:
            return None
        vector = self._vector.embed(query.text)
        if s.vector_docs == 0 or s.vector_weight == 0:
            return vector
        ids = [f.id for f in fused[: s.vector_docs]]
        stored = self._engine.get(self._alias, ids, with_vectors=True)
        vectors = [d.vector for d in stored if d.vector is not None]
        return rocchio(vector, vectors, s.vector_weight)

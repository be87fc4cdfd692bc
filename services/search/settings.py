"""Settings of the query service's stages: a part of the deployable's one settings object
(`ApiSettings.search`), so every knob is also an environment variable, e.g. `TRAWL_SEARCH__FUSION=zscore`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from services.search.feedback import FeedbackSettings


def _non_negative(weights: dict[str, float]) -> dict[str, float]:
    for name, w in weights.items():
        if w < 0:
            raise ValueError(f"weight of {name!r} must be >= 0")
    return weights


class SuggestSettings(BaseModel):
    # Hits asked of each leg; the answer is a handful, so a few more than that is enough to fill it.
    depth: int = Field(20, ge=1, le=1000)
    # A small k sharpens the difference between the first few ranks (60 would make them nearly equal).
    rrf_k: int = Field(10, ge=1)
    # prefix: the typed text as is; fuzzy: the last word taken as complete (typo tolerant); vector: k-NN.
    weights: dict[str, float] = Field(default_factory=lambda: {"prefix": 1.0, "fuzzy": 0.6, "vector": 0.3})
    # Below this many characters the vector leg is skipped: speed matters more than its recall there.
    vector_min_chars: int = Field(3, ge=1)
    # Vector hits less similar than this are noise for a partial query, not suggestions.
    vector_min_score: float = 0.3
    # A held vector whose search found nothing above that floor is not searched again with the same filter for
    # this long (0: always search). While the next word is typed, every keystroke reuses the vector of the words
    # before it ("The" for "The S", "The Sh", ...): at 100k films, 627 of the vector leg's 640 runs over the
    # benchmark's keystrokes found nothing, and they were half of the slowest keystrokes. Only a write could change
    # the answer: for this long, a new item close to such a vector may be missed by the vector leg (never shown
    # wrongly).
    vector_empty_ttl_s: float = Field(60.0, ge=0)
    # How long suggest waits for the vector leg once the text legs are done (None: always wait); this answer
    # goes without a leg still running: typing speed matters more than the last point of recall. The query is
    # never embedded on a keystroke's path when the embedder caches (the service's does): the leg runs only
    # on a held vector, and a missing one is embedded in the background for the next keystroke.
    vector_budget_ms: float | None = Field(15.0, ge=0)
    # A missing query vector is embedded in the background once no newer keystroke came for this long. People
    # type a key every 100-300 ms, so each keystroke's vector is ready for the next; a burst (a paste, a
    # client sending every character at once) costs one embedding instead of keeping the model busy.
    vector_embed_idle_ms: float = Field(50.0, ge=0)
    # The fuzzy leg runs when the last word has at least this many characters.
    fuzzy_min_chars: int = Field(4, ge=1)
    # True: the fuzzy leg runs only when the prefix leg found fewer hits than the answer's size, i.e. when a
    # typo in the word being typed is the likely reason (at 100k items it was most of suggest's cost over the
    # prefix query). False: it always runs, beside the prefix leg.
    fuzzy_fallback: bool = True
    # Popularity prior: final = fused / best fused + weight * log1p(popularity) / log1p(max popularity).
    popularity_weight: float = Field(0.15, ge=0)
    # The engines' prior inside the prefix query: text score x (1 + weight * ln(1 + popularity)), so that the
    # popular title among close matches makes the leg's cut ("star": Star Wars, not only Star Kid); 0: text alone.
    prefix_popularity_weight: float = Field(0.2, ge=0)
    max_completion_words: int = Field(10, ge=1)
    # Answers held for a keystroke asked again (most people's first letters are the same few), keyed by the
    # text, size, filter, the vector the vector leg searches (none yet, an earlier keystroke's, its own) and the
    # engine's state token, so that any write or alias move makes them unreachable. Only on an engine that gives
    # such a token (the embedded one; not OpenSearch), and not an answer the vector leg missed by its budget.
    # At most this many (0: none), each for at most `answer_cache_ttl_s`.
    answer_cache: int = Field(2048, ge=0)
    answer_cache_ttl_s: float = Field(60.0, gt=0)
    # The vector leg's hits held by (the text whose vector was searched, filter, depth, state token), for as
    # long as held answers: the keystrokes of a word reuse one held vector, so one search serves them all. And
    # a vector embedded in the typist's pause is searched right there, in the background, so that the next
    # keystroke finds its hits ready: at 150 ms between keystrokes, the vector leg running beside the prefix
    # query took a keystroke from 3.8 to 5.2 ms at p50. At most this many (0: none); same engines as above.
    # (An answer made from held hits is held in turn: it may be up to twice the time limit old, and right,
    # since both keys carry the token.)
    vector_hits_cache: int = Field(1024, ge=0)

    _check = field_validator("weights")(_non_negative)


class SearchSettings(BaseModel):
    # Hits asked of each retriever per query; the result list is their fused union (so at most legs × depth).
    candidate_depth: int = Field(200, ge=1, le=10_000)
    fusion: Literal["rrf", "minmax", "zscore"] = "rrf"
    rrf_k: int = Field(60, ge=1)
    weights: dict[str, float] = Field(default_factory=lambda: {"keyword": 1.0, "vector": 1.0})
    # BM25 field boosts; None: the engine's defaults (services.core.domain.DEFAULT_FIELD_BOOSTS).
    boosts: dict[str, float] | None = None
    facet_size: int = Field(10, ge=1, le=1000)
    # When the keyword leg finds nothing, the titles that match every word up to a typo or two stand in for it
    # ("godfahter" finds The Godfather). Queries with any keyword hit are unchanged.
    typo_fallback: bool = True
    # Query vectors remembered (LRU), shared by search and suggest.
    query_vector_cache: int = Field(4096, ge=0)
    # Threads that run the retrievers of queries side by side (shared by every request of the process).
    workers: int = Field(32, ge=1)
    suggest: SuggestSettings = Field(default_factory=SuggestSettings)
    # Pseudo-relevance feedback: a second retrieval pass with the expanded query and the moved query vector.
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)

    _check = field_validator("weights")(_non_negative)

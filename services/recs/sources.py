"""Candidate sources. Each proposes items for a context and names itself on what it returns.

The interaction-model sources score every item of the vocabulary at once (`SourceResult.dense`), so that the
ranker can read each source's opinion of every candidate, whichever source proposed it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from services.core.engines.base import SearchEngine
from services.core.filters import Filter, excluding_ids, only_visible
from services.recs.models import RecsArtefacts
from services.recs.settings import RecsSettings
from services.recs.types import FloatArray, RecContext, SourceResult

EASE = "ease"
CO_INTERACTION = "co_interaction"
TRANSITIONS = "transitions"
VECTOR = "vector"
TRENDING = "trending"


@runtime_checkable
class CandidateSource(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, context: RecContext, *, k: int) -> SourceResult: ...


def _best_rows(scores: FloatArray, k: int) -> np.ndarray:
    """Rows of the k best finite scores, best first; ties: lower row first."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    part = part[np.isfinite(scores[part])]
    return part[np.lexsort((part, -scores[part]))]


def top_items(
    name: str, artefacts: RecsArtefacts, dense: FloatArray, context: RecContext, k: int, *, positive: bool = True
) -> SourceResult:
    """The k best items of a dense score vector, excluded items (and non-positive scores) left out. Under a
    request filter, items are taken best first while the catalog's copy of them passes it, so that a narrow
    filter still gets k items (looking at most `scan_limit` deep)."""
    scores = np.where(context.excluded_mask, -np.inf, dense)
    if positive:
        scores = np.where(scores > 0, scores, -np.inf)
    ids = artefacts.items.ids
    catalog = context.catalog
    if catalog is None or catalog.filter is None:
        order = _best_rows(scores, k)
        return SourceResult(name, tuple(ids[r] for r in order), tuple(float(scores[r]) for r in order), dense)
    ranked = _best_rows(scores, catalog.scan_limit)
    kept: list[int] = []
    start, chunk = 0, max(2 * k, 32)
    while start < len(ranked) and len(kept) < k:
        rows = ranked[start : start + chunk]
        start += len(rows)
        admitted = set(catalog.admitted([ids[r] for r in rows]))
        kept.extend(int(r) for r in rows if ids[r] in admitted)
        chunk *= 2  # a filter that admitted few so far will likely admit few further down: read more at once
    kept = kept[:k]
    return SourceResult(name, tuple(ids[r] for r in kept), tuple(float(scores[r]) for r in kept), dense)


def _weighted_rows(matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> FloatArray:
    """sum_i weights[i] * matrix[rows[i]], dense."""
    if rows.size == 0:
        return np.zeros(matrix.shape[1], dtype=np.float32)
    picked = matrix[rows]
    return np.asarray(picked.T @ weights.astype(np.float32), dtype=np.float32).reshape(-1)


class EaseSource:
    """EASE over the recency-weighted profile; negatives count against the items they predict."""

    name = EASE

    def __init__(self, artefacts: RecsArtefacts, settings: RecsSettings) -> None:
        self._artefacts = artefacts
        self._negative_weight = settings.negative_weight

    def run(self, context: RecContext, *, k: int) -> SourceResult:
        b = self._artefacts.ease
        if b is None or not context.known:
            return SourceResult(self.name, (), ())
        dense = (context.row_weights @ b[context.rows]).astype(np.float32)
        if context.negative_rows.size and self._negative_weight > 0:
            scale = self._negative_weight * float(context.row_weights.mean())
            dense -= scale * b[context.negative_rows].sum(axis=0)
        return top_items(self.name, self._artefacts, dense, context, k, positive=False)


class CoInteractionSource:
    """Co-interaction neighbours (the periodic job's table) of the most recent items, decayed by recency."""

    name = CO_INTERACTION

    def __init__(self, artefacts: RecsArtefacts, settings: RecsSettings) -> None:
        self._artefacts = artefacts
        self._negative_weight = settings.negative_weight

    def run(self, context: RecContext, *, k: int) -> SourceResult:
        if not context.recent_rows.size:
            return SourceResult(self.name, (), ())
        table = self._artefacts.co_interaction
        dense = _weighted_rows(table, context.recent_rows, context.recent_weights)
        if context.negative_rows.size and self._negative_weight > 0:
            dense -= self._negative_weight * _weighted_rows(
                table, context.negative_rows, np.ones(context.negative_rows.size, dtype=np.float32)
            )
        return top_items(self.name, self._artefacts, dense, context, k)


class TransitionSource:
    """Sequential transitions: what users engaged with next after the last items, decayed by recency."""

    name = TRANSITIONS

    def __init__(self, artefacts: RecsArtefacts) -> None:
        self._artefacts = artefacts

    def run(self, context: RecContext, *, k: int) -> SourceResult:
        if not context.recent_rows.size:
            return SourceResult(self.name, (), ())
        dense = _weighted_rows(self._artefacts.transitions, context.recent_rows, context.recent_weights)
        return top_items(self.name, self._artefacts, dense, context, k)


class TrendingSource:
    """Recent popularity: each item's share of the interactions in the window before the request; all-time
    popularity breaks ties and fills in when the window holds too little."""

    name = TRENDING

    def __init__(self, artefacts: RecsArtefacts, settings: RecsSettings) -> None:
        self._artefacts = artefacts
        self._days = settings.trending_days

    def run(self, context: RecContext, *, k: int) -> SourceResult:
        pop = self._artefacts.popularity
        share = pop.window_share(context.profile.at, self._days)
        alltime = pop.users / max(float(pop.users.max(initial=0.0)), 1.0)
        dense = (share + 1e-6 * alltime).astype(np.float32)
        return top_items(self.name, self._artefacts, dense, context, k)


# Above this many ids to leave out, the filter would be a huge terms clause: ask for more and drop them here.
MAX_FILTER_IDS = 10_000


def engine_filter(flt: Filter | None, excluded: Collection[str], k: int) -> tuple[Filter, int]:
    """What an engine query of k items for recommendations asks: available items that pass the request's
    filter and are not excluded, and how many to ask for (more when the exclusions stay out of the filter)."""
    available = only_visible(flt)
    if len(excluded) > MAX_FILTER_IDS:
        return available, min(k + len(excluded), 10_000)
    return excluding_ids(available, sorted(excluded)), k


class VectorSource:
    """Nearest items to the user (or seed) vector, through the engine's vector search (engine-agnostic).
    Exclusions, availability and the request's filter go to the engine as one filter, applied inside the
    k-NN search, so that it returns k usable items."""

    name = VECTOR

    def __init__(self, engine: SearchEngine, alias: str) -> None:
        self._engine = engine
        self._alias = alias

    def run(self, context: RecContext, *, k: int) -> SourceResult:
        if context.user_vector is None:
            return SourceResult(self.name, (), ())
        excluded = context.profile.excluded
        flt, asked = engine_filter(context.filter, excluded, k)
        ids: list[str] = []
        scores: list[float] = []
        for hit in self._engine.vector_search(self._alias, context.user_vector, k=asked, filter=flt):
            if hit.id in excluded:
                continue
            ids.append(hit.id)
            scores.append(float(hit.score))
            if len(ids) >= k:
                break
        return SourceResult(self.name, tuple(ids), tuple(scores))

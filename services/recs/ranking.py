"""The stages after the sources: merge candidates, compute their features, rank, demote what looks like a
negative, drop what the catalog no longer offers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from services.core.engines.base import SearchEngine
from services.recs.catalog import CatalogView
from services.recs.models import DAY, RecsArtefacts
from services.recs.profile import ItemVectors
from services.recs.settings import RecsSettings
from services.recs.sources import CO_INTERACTION, EASE, TRANSITIONS, TRENDING, VECTOR
from services.recs.types import (
    Candidate,
    FeatureMatrix,
    RankedCandidate,
    RecContext,
    SourceHit,
    SourceResult,
)

DENSE_SOURCES = (EASE, CO_INTERACTION, TRANSITIONS, TRENDING)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{s}_{kind}" for s in DENSE_SOURCES for kind in ("score", "rank")),
    "ease_flat_score",
    "co_profile_score",
    "co_last_sim",
    "co_max_sim",
    "vector_sim",
    "vector_rank",
    "vector_last_sim",
    "trend_1d",
    "trend_30d",
    "log_popularity",
    "age_days",
    "mean_value",
    "log_history",
    "n_sources",
)


class CandidateMerger:
    """Union of the sources' answers; each candidate keeps every source that proposed it, with score and rank.
    Order: best rank in any source, then the order of the sources."""

    def __init__(self, artefacts: RecsArtefacts) -> None:
        self._artefacts = artefacts

    def run(self, results: Sequence[SourceResult], context: RecContext) -> list[Candidate]:
        excluded = context.profile.excluded
        merged: dict[str, Candidate] = {}
        best: dict[str, tuple[int, int]] = {}
        pos = self._artefacts.items.pos
        for order, result in enumerate(results):
            for rank, (item, score) in enumerate(zip(result.item_ids, result.scores, strict=True), start=1):
                if item in excluded:
                    continue
                cand = merged.get(item)
                if cand is None:
                    cand = merged[item] = Candidate(item, pos.get(item, -1))
                    best[item] = (rank, order)
                cand.sources[result.name] = SourceHit(score, rank)
                best[item] = min(best[item], (rank, order))
        return sorted(merged.values(), key=lambda c: best[c.item_id])


def _rank_desc(values: np.ndarray) -> np.ndarray:
    """1-based rank of each value among the candidates, highest first; NaN stays NaN."""
    out = np.full(values.shape[0], np.nan)
    finite = np.isfinite(values)
    idx = np.flatnonzero(finite)
    order = idx[np.argsort(-values[idx], kind="stable")]
    out[order] = np.arange(1, order.size + 1)
    return out


class FeatureBuilder:
    """Per-candidate features: each source's score and rank among the candidates (for every candidate, not only
    those the source proposed), similarities to the profile, popularity, trend, age and value of the item."""

    names = FEATURE_NAMES

    def __init__(self, artefacts: RecsArtefacts, vectors: ItemVectors | None) -> None:
        self._artefacts = artefacts
        self._vectors = vectors

    def run(
        self, context: RecContext, candidates: Sequence[Candidate], results: Sequence[SourceResult]
    ) -> FeatureMatrix:
        n = len(candidates)
        a = self._artefacts
        rows = np.fromiter((c.row for c in candidates), dtype=np.int64, count=n)
        known = rows >= 0
        kr = rows[known]
        cols: dict[str, np.ndarray] = {}

        def column(values_for_known: np.ndarray | float) -> np.ndarray:
            out = np.full(n, np.nan)
            out[known] = values_for_known
            return out

        dense = {r.name: r.dense for r in results if r.dense is not None}
        for name in DENSE_SOURCES:
            d = dense.get(name)
            score = column(d[kr]) if d is not None else np.full(n, np.nan)
            cols[f"{name}_score"] = score
            cols[f"{name}_rank"] = _rank_desc(score)

        history = context.rows
        if a.ease is not None and history.size and kr.size:
            cols["ease_flat_score"] = column(a.ease[np.ix_(history, kr)].sum(axis=0))
        else:
            cols["ease_flat_score"] = np.full(n, np.nan)
        if history.size and kr.size:
            block = a.co_interaction[history][:, kr]
            cols["co_profile_score"] = column(np.asarray(block.T @ context.row_weights).reshape(-1))
            cols["co_max_sim"] = column(np.asarray(block.max(axis=0).todense()).reshape(-1))
        else:
            cols["co_profile_score"] = cols["co_max_sim"] = np.full(n, np.nan)
        if context.recent_rows.size and kr.size:
            last = a.co_interaction[context.recent_rows[0]]
            cols["co_last_sim"] = column(np.asarray(last[:, kr].todense()).reshape(-1))
        else:
            cols["co_last_sim"] = np.full(n, np.nan)

        cols["vector_sim"], cols["vector_last_sim"] = self._similarities(context, candidates)
        cols["vector_rank"] = _rank_desc(cols["vector_sim"])

        pop = a.popularity
        at = context.profile.at
        cols["trend_1d"] = column(pop.window_share(at, 1.0)[kr])
        cols["trend_30d"] = column(pop.window_share(at, 30.0)[kr])
        cols["log_popularity"] = column(np.log1p(pop.users[kr]))
        age = (at - pop.first_seen[kr]) / DAY
        cols["age_days"] = column(np.where(np.isfinite(age), age, np.nan))
        cols["mean_value"] = column(pop.mean_value[kr])
        cols["log_history"] = np.full(n, np.log1p(context.profile.history_length))
        cols["n_sources"] = np.fromiter((len(c.sources) for c in candidates), dtype=np.float64, count=n)
        values = np.column_stack([cols[name] for name in self.names]) if n else np.zeros((0, len(self.names)))
        return FeatureMatrix(self.names, values.astype(np.float64))

    def _similarities(self, context: RecContext, candidates: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        n = len(candidates)
        sim = np.full(n, np.nan)
        last = np.full(n, np.nan)
        if self._vectors is None or (context.user_vector is None and context.last_vector is None):
            return sim, last
        found = self._vectors.get([c.item_id for c in candidates])
        idx = [k for k, c in enumerate(candidates) if c.item_id in found]
        if not idx:
            return sim, last
        mat = np.vstack([found[candidates[k].item_id] for k in idx])
        if context.user_vector is not None:
            sim[idx] = mat @ context.user_vector
        if context.last_vector is not None:
            last[idx] = mat @ context.last_vector
        return sim, last


@runtime_checkable
class Ranker(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, candidates: Sequence[Candidate], features: FeatureMatrix) -> list[RankedCandidate]: ...


def _ordered(candidates: Sequence[Candidate], scores: np.ndarray) -> list[RankedCandidate]:
    order = np.argsort(-scores, kind="stable")
    return [RankedCandidate(candidates[k], float(scores[k])) for k in order]


class LambdaRankRanker:
    """A LightGBM LambdaRank model over the candidates' features (trained by `RankerTrainer`)."""

    name = "lambdarank"

    def __init__(self, model: str, feature_names: Sequence[str]) -> None:
        import lightgbm as lgb

        if tuple(feature_names) != FEATURE_NAMES:
            raise ValueError("the ranker was trained on other features; retrain it")
        self._booster = lgb.Booster(model_str=model)

    def run(self, candidates: Sequence[Candidate], features: FeatureMatrix) -> list[RankedCandidate]:
        if not candidates:
            return []
        scores = np.asarray(self._booster.predict(features.values, num_threads=1), dtype=np.float64)
        return _ordered(candidates, scores)


DEFAULT_FUSION_WEIGHTS = {EASE: 1.0, CO_INTERACTION: 1.0, TRANSITIONS: 1.0, VECTOR: 0.3, TRENDING: 0.2}


class FusionRanker:
    """Weighted reciprocal-rank fusion of the sources' ranks: the order used while no ranker is trained."""

    name = "rrf"

    def __init__(self, weights: dict[str, float] | None = None, k: float = 60.0) -> None:
        self._weights = dict(DEFAULT_FUSION_WEIGHTS if weights is None else weights)
        self._k = k

    def run(self, candidates: Sequence[Candidate], features: FeatureMatrix) -> list[RankedCandidate]:
        scores = np.asarray(
            [sum(self._weights.get(s, 0.0) / (self._k + hit.rank) for s, hit in c.sources.items()) for c in candidates],
            dtype=np.float64,
        )
        return _ordered(candidates, scores)


class NegativeDemoter:
    """Candidates that resemble a negative item (by content or by co-interaction) more than the candidates
    commonly do move down, the more alike the further. Every film is somewhat like every other (cosines of
    0.3-0.6 are common): a penalty on the raw similarity reordered the whole list for one negative, where only
    the items like it should move."""

    def __init__(self, artefacts: RecsArtefacts, vectors: ItemVectors | None, settings: RecsSettings) -> None:
        self._artefacts = artefacts
        self._vectors = vectors
        self._penalty = settings.negative_demotion

    def run(self, ranked: list[RankedCandidate], context: RecContext) -> list[RankedCandidate]:
        negatives = context.profile.negatives
        if not negatives or not ranked or self._penalty <= 0:
            return ranked
        n = len(ranked)
        sim = np.zeros(n)
        if self._vectors is not None:
            found = self._vectors.get([*negatives, *(r.candidate.item_id for r in ranked)])
            neg = [found[i] for i in negatives if i in found]
            if neg:
                neg_mat = np.vstack(neg)
                for k, r in enumerate(ranked):
                    vec = found.get(r.candidate.item_id)
                    if vec is not None:
                        sim[k] = float(np.max(neg_mat @ vec))
        rows = np.fromiter((r.candidate.row for r in ranked), dtype=np.int64, count=n)
        if context.negative_rows.size and (rows >= 0).any():
            block = self._artefacts.co_interaction[context.negative_rows][:, rows[rows >= 0]]
            co = np.asarray(block.max(axis=0).todense()).reshape(-1)
            sim[rows >= 0] = np.maximum(sim[rows >= 0], co)
        # How much more alike than the median candidate, squared: a near-duplicate of the negative (a sequel)
        # drops far, one a little more alike than most moves a place or none.
        sim = np.clip(sim, 0.0, 1.0)
        common = float(np.median(sim))
        excess = np.clip((sim - common) / max(1.0 - common, 1e-6), 0.0, 1.0) ** 2
        position = 1.0 - np.arange(n) / n  # the ranker's order as a score in (0, 1]
        final = position - self._penalty * excess
        order = np.argsort(-final, kind="stable")
        return [RankedCandidate(ranked[k].candidate, float(final[k])) for k in order]


class CatalogGuard:
    """Keeps only items the catalog still offers (present, available, passing the request's filter), in order,
    until k are found. Reads a few more than it needs at a time, so that a deleted item costs no second round
    trip; items the sources already read for the filter are not read again."""

    def __init__(self, engine: SearchEngine | None, alias: str, spare: int = 5) -> None:
        self._engine = engine
        self._alias = alias
        self._spare = spare

    def run(
        self, ranked: Sequence[RankedCandidate], k: int, catalog: CatalogView | None = None
    ) -> list[RankedCandidate]:
        if catalog is None:
            if self._engine is None:
                return list(ranked[:k])
            catalog = CatalogView(self._engine, self._alias)
        out: list[RankedCandidate] = []
        start = 0
        while start < len(ranked) and len(out) < k:
            chunk = ranked[start : start + 2 * (k - len(out)) + self._spare]
            start += len(chunk)
            ok = set(catalog.admitted([r.candidate.item_id for r in chunk]))
            out.extend(r for r in chunk if r.candidate.item_id in ok)
        return out[:k]

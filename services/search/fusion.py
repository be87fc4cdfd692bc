"""Fusion: one ordered list from several retrievers' lists. Reciprocal-rank fusion, or score normalisation
(min-max, z-score) followed by a weighted sum. Weights are per retriever name; a missing name weighs 1.

Ties are broken the same way everywhere: more retrievers agreeing, then the best single rank, then the id,
so that the fused order is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from services.search.types import Candidate, FusedCandidate

Normalisation = Literal["minmax", "zscore"]
FusionName = Literal["rrf", "minmax", "zscore"]


def _weights_text(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(weights.items()))


def fused_order_key(candidate: Candidate, score: float) -> tuple[float, int, int, str]:
    """The sort key of the fused order: the score, then ties as the module says."""
    return -score, -len(candidate.ranks), min(candidate.ranks.values(), default=0), candidate.id


def rank_fused(candidates: Sequence[Candidate], scores: Sequence[float]) -> list[FusedCandidate]:
    """Order candidates by fused score (ties as the module says) and number them from 1."""
    keys = [fused_order_key(c, s) for c, s in zip(candidates, scores, strict=True)]
    order = sorted(range(len(candidates)), key=keys.__getitem__)
    return [FusedCandidate(candidates[i], float(scores[i]), rank) for rank, i in enumerate(order, start=1)]


class RRFFuser:
    """Reciprocal-rank fusion: score = Σ weight_leg / (k + rank_leg). Ignores raw scores, so it needs no
    calibration between BM25 and cosine; `k` (60 in the original paper) flattens the top ranks' advantage."""

    def __init__(self, k: int = 60, weights: Mapping[str, float] | None = None) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self._k = k
        self._weights = dict(weights or {})

    @property
    def name(self) -> str:
        return f"rrf(k={self._k}; {_weights_text(self._weights)})"

    def scores(self, candidates: Sequence[Candidate]) -> list[float]:
        """Each candidate's fused score, in the order given."""
        weights, k = self._weights, self._k
        return [sum(weights.get(leg, 1.0) / (k + rank) for leg, rank in c.ranks.items()) for c in candidates]

    def run(self, candidates: Sequence[Candidate]) -> list[FusedCandidate]:
        return rank_fused(candidates, self.scores(candidates))


def min_max(values: Sequence[float]) -> list[float]:
    """Scale to [0, 1]; a list whose values are all equal maps to 1 (each is as good as the best)."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [1.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def z_score(values: Sequence[float]) -> list[float]:
    """Centre on the mean, scale by the (population) standard deviation; no spread maps to 0."""
    if not values:
        return []
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if std <= 1e-12:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


class ScoreFuser:
    """Normalise each retriever's raw scores over the candidates it returned, then a weighted sum.

    A candidate one retriever did not return gets that retriever's lowest normalised score (0 for min-max):
    it ranked no better than the worst hit that retriever did return.
    """

    def __init__(self, normalisation: Normalisation = "minmax", weights: Mapping[str, float] | None = None) -> None:
        self._normalise = {"minmax": min_max, "zscore": z_score}[normalisation]
        self._label = normalisation
        self._weights = dict(weights or {})

    @property
    def name(self) -> str:
        return f"{self._label}({_weights_text(self._weights)})"

    def run(self, candidates: Sequence[Candidate]) -> list[FusedCandidate]:
        legs = sorted({leg for c in candidates for leg in c.scores})
        fused = [0.0] * len(candidates)
        for leg in legs:
            members = [i for i, c in enumerate(candidates) if leg in c.scores]
            normalised = self._normalise([candidates[i].scores[leg] for i in members])
            by_index = dict(zip(members, normalised, strict=True))
            floor = min(normalised)
            weight = self._weights.get(leg, 1.0)
            for i in range(len(candidates)):
                fused[i] += weight * by_index.get(i, floor)
        return rank_fused(candidates, fused)


def build_fuser(
    name: FusionName, *, weights: Mapping[str, float] | None = None, rrf_k: int = 60
) -> RRFFuser | ScoreFuser:
    if name == "rrf":
        return RRFFuser(rrf_k, weights)
    return ScoreFuser(name, weights)

"""The scoring stage: LightGBM LambdaRank over the request's features, with a fallback to the fused order.

The model sits in a `ModelSlot`; a reload swaps the slot's content in one assignment, so a request in flight
finishes with the model it started with and the next one gets the new model: no restart, no failed request.
Without a model, or when the model fails on a request, the candidates keep the fused order; the stage's name
(shown as `explain.scorer`) and the metrics say so and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from services.ranking.feature_log import FeatureLogger, FeatureRecord, LoggedItem
from services.ranking.features import FeatureExtractor, FeatureMatrix
from services.ranking.model import RankingModel
from services.search.types import FusedCandidate, ScoredCandidate, SearchQuery

log = logging.getLogger(__name__)


class FeatureRow(Mapping[str, float]):
    """One candidate's features as a read-only mapping over the request's matrix (no copy); missing (NaN)
    features are left out."""

    __slots__ = ("_matrix", "_row")

    def __init__(self, matrix: FeatureMatrix, row: int) -> None:
        self._matrix = matrix
        self._row = row

    def _items(self) -> Iterator[tuple[str, float]]:
        values = self._matrix.values[self._row]
        for name, v in zip(self._matrix.feature_set.names, values.tolist(), strict=True):
            if v == v:
                yield name, round(v, 6)

    def __getitem__(self, key: str) -> float:
        for name, v in self._items():
            if name == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items())

    def __len__(self) -> int:
        return sum(1 for _ in self._items())


@dataclass
class RankingMetrics:
    """Counters of the scoring stage since start (shown by GET /admin/model)."""

    queries: int = 0
    scored: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    model_errors: int = 0
    last_error: str | None = None
    reloads: int = 0
    refused: int = 0
    scoring_ms_total: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, fallback: str | None, ms: float) -> None:
        with self._lock:
            self.queries += 1
            self.scoring_ms_total += ms
            if fallback is None:
                self.scored += 1
            else:
                self.fallbacks[fallback] = self.fallbacks.get(fallback, 0) + 1

    def error(self, message: str) -> None:
        with self._lock:
            self.model_errors += 1
            self.last_error = message

    def reloaded(self) -> None:
        with self._lock:
            self.reloads += 1

    def reload_refused(self) -> None:
        with self._lock:
            self.refused += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "queries": self.queries,
                "scored_by_model": self.scored,
                "fallbacks": dict(self.fallbacks),
                "model_errors": self.model_errors,
                "last_error": self.last_error,
                "reloads": self.reloads,
                "refused": self.refused,
                "mean_scoring_ms": round(self.scoring_ms_total / self.queries, 3) if self.queries else None,
            }


@dataclass(frozen=True, slots=True)
class SlotState:
    model: RankingModel | None
    why_none: str  # why there is no model (when `model` is None)
    since: datetime


class ModelSlot:
    """Holds the served model. Readers take `state` once per request; writers replace it whole."""

    def __init__(self, model: RankingModel | None, why_none: str = "no model loaded") -> None:
        self._state = SlotState(model, why_none, datetime.now(UTC))

    @property
    def state(self) -> SlotState:
        return self._state

    def swap(self, model: RankingModel | None, why_none: str = "model unloaded") -> SlotState:
        previous, self._state = self._state, SlotState(model, why_none, datetime.now(UTC))
        return previous

    def disable(self, model: RankingModel, why: str) -> None:
        """Take a failing model out of service, unless a reload already replaced it."""
        if self._state.model is model:
            self._state = SlotState(None, why, datetime.now(UTC))


class LambdaRankScorer:
    """Scores the top `window` fused candidates with the slot's model; the rest follow in the fused order.

    Features are computed (and logged) whether or not a model is served, so that interactions can become
    training rows before the first model exists.
    """

    def __init__(
        self,
        slot: ModelSlot,
        extractor: FeatureExtractor,
        *,
        window: int = 100,
        metrics: RankingMetrics | None = None,
        feature_log: FeatureLogger | None = None,
        log_depth: int = 50,
    ) -> None:
        self.slot = slot
        self.extractor = extractor
        self.metrics = metrics or RankingMetrics()
        self._window = window
        self._feature_log = feature_log
        self._log_depth = log_depth

    @property
    def name(self) -> str:
        state = self.slot.state
        if state.model is None:
            return f"fused order (fallback: {state.why_none})"
        card = state.model.card
        return f"lambdarank(model={card.model_id}; features={card.feature_set}@{card.feature_version}; " + (
            f"window={self._window})"
        )

    def run(self, query: SearchQuery, candidates: Sequence[FusedCandidate]) -> list[ScoredCandidate]:
        start = time.perf_counter()
        model = self.slot.state.model  # one read: a reload during this request does not mix two models
        if model is None and self._feature_log is None:
            # Nothing would read the features (no model to score them, no log to train the next one from):
            # the fused order without them. Computing them was most of a search's own time at 100k items.
            self.metrics.count(fallback="no model", ms=(time.perf_counter() - start) * 1000)
            return [ScoredCandidate(c, c.score, rank) for rank, c in enumerate(candidates, start=1)]
        head, tail = candidates[: self._window], candidates[self._window :]
        fallback: str | None = None
        try:
            matrix = self.extractor.run(query, head)
        except Exception as exc:  # a bug in a feature must cost ranking quality, not the request
            log.exception("feature computation failed; fused order served")
            self.metrics.error(f"features: {exc}")
            self.metrics.count(fallback="features failed", ms=(time.perf_counter() - start) * 1000)
            return [ScoredCandidate(c, c.score, rank) for rank, c in enumerate(candidates, start=1)]
        scores: npt.NDArray[np.float64] | None = None
        if model is None:
            fallback = "no model"
        else:
            try:
                scores = model.predict(matrix.values)
            except Exception as exc:
                message = f"model {model.model_id} failed: {exc}"
                log.exception("%s; taken out of service, fused order served", message)
                self.metrics.error(message)
                self.slot.disable(model, message)
                fallback = "model failed"
        if scores is None:
            order = list(range(len(head)))
            scores = np.array([c.score for c in head], dtype=np.float64)
        else:
            order = sorted(range(len(head)), key=lambda i: (-scores[i], i))  # ties: the fused order
        out = [
            ScoredCandidate(head[i], float(scores[i]), rank, FeatureRow(matrix, i))
            for rank, i in enumerate(order, start=1)
        ]
        low = float(scores.min()) if len(head) else 0.0
        out.extend(
            ScoredCandidate(c, low - 1.0 - i, len(head) + i + 1) for i, c in enumerate(tail)
        )  # below every scored candidate, in the fused order
        self.metrics.count(fallback=fallback, ms=(time.perf_counter() - start) * 1000)
        if self._feature_log is not None and self._feature_log.sampled():
            self._log(query, matrix, out, model)
        return out

    def _log(
        self, query: SearchQuery, matrix: FeatureMatrix, out: Sequence[ScoredCandidate], model: RankingModel | None
    ) -> None:
        assert self._feature_log is not None
        rows = {id_: i for i, id_ in enumerate(matrix.ids)}
        items = [
            LoggedItem(c.id, c.rank, c.fused.rank, c.score, matrix.values[rows[c.id]].tolist())
            for c in out[: self._log_depth]
            if c.id in rows
        ]
        self._feature_log.log(
            FeatureRecord(
                query.query_id,
                query.text,
                matrix.feature_set.id,
                matrix.feature_set.names,
                model.model_id if model else None,
                items,
                datetime.now(UTC),
            )
        )

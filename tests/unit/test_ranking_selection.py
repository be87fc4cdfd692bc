"""Choosing LambdaRank parameters by cross-validation on the training queries only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pytest

from services.ranking import train
from services.ranking.features import SEARCH_FEATURES, FeatureExtractor
from services.ranking.train import QueryRows, TrainingSet, select_params

pytestmark = pytest.mark.unit


def training_set(queries: int = 18) -> TrainingSet:
    """The relevant item of each query has a high first feature: any grid point learns it."""
    rng = np.random.default_rng(3)
    width = len(SEARCH_FEATURES.names)
    rows = []
    for q in range(queries):
        x = rng.random((20, width)).astype(np.float32)
        y = np.zeros(20)
        y[5], x[5, 0] = 3, 5.0
        rows.append(QueryRows(f"q{q}", tuple(f"q{q}-d{i}" for i in range(20)), x, y))
    rows.append(
        QueryRows(
            "extra", tuple(f"extra-d{i}" for i in range(20)), rng.random((20, width)).astype(np.float32), np.eye(20)[0]
        )
    )
    judged = {r.key: {f"{r.key}-d5": 3} for r in rows}
    return TrainingSet(SEARCH_FEATURES, FeatureExtractor().params, 100, "synthetic", rows, judged, frozenset({"extra"}))


def test_selection_trains_and_measures_only_on_the_given_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    ts = training_set()
    allowed = [f"q{i}" for i in range(12)]  # q12..q17 play a test fold: never seen
    seen: list[set[str]] = []
    real_fit = train.fit

    def spy(ts_: TrainingSet, keys: Iterable[str] | None, params: Mapping[str, Any], rounds: int) -> Any:
        assert keys is not None
        chosen = set(keys)
        seen.append(chosen)
        return real_fit(ts_, chosen, params, rounds)

    monkeypatch.setattr(train, "fit", spy)
    grid = ({"num_leaves": 3, "min_data_in_leaf": 5}, {"num_leaves": 7, "min_data_in_leaf": 5})
    chosen = select_params(ts, allowed, grid=grid, rounds=(5, 10), folds=3)
    assert len(seen) == len(grid) * 3
    for keys in seen:
        assert keys <= set(allowed) | {"extra"} and "extra" in keys  # train-only queries always train
        assert len(keys & set(allowed)) == 8  # two of the three inner folds
    assert chosen.rounds in (5, 10) and chosen.params["num_leaves"] in (3, 7)
    assert chosen.ndcg10 > 0.9  # the planted signal is learnt

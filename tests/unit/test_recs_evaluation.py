from __future__ import annotations

import numpy as np
import pytest

from services.recs.baselines import EaseBaseline, ItemKNNBaseline, TransitionBaseline, history_matrix
from services.recs.interactions import Interaction, InteractionType
from services.recs.movielens import leave_last_out
from tests.unit.recs_world import at

pytestmark = pytest.mark.unit


def rating(user: str, item: str, day: float) -> Interaction:
    return Interaction(user, item, InteractionType.RATING, at(day), value=4.0)


def test_leave_last_out_takes_the_latest_and_on_ties_the_last_in_file_order() -> None:
    rows = [
        rating("u", "late", 5),
        rating("u", "tie-1", 9),
        rating("u", "early", 1),
        rating("u", "tie-2", 9),
        rating("v", "only", 1),
        rating("w", "x", 2),
        rating("w", "y", 1),
    ]
    split = leave_last_out(rows)
    assert split.test["u"].item_id == "tie-2" and split.test["w"].item_id == "x"
    assert "v" not in split.test  # a single interaction leaves nothing to learn from
    assert [i.item_id for i in split.train] == ["late", "tie-1", "early", "only", "y"]  # file order kept


def test_recency_weighted_history_halves_every_half_life() -> None:
    m = history_matrix([[0, 1, 2, 3, 4, 5]], 6, half_life=5.0).toarray()[0]
    assert m[5] == pytest.approx(1.0) and m[0] == pytest.approx(0.5)


def test_baselines_score_what_their_definitions_say() -> None:
    seqs = [[0, 1, 2], [0, 1, 3], [1, 2]]
    x = history_matrix(seqs, 4)
    knn = ItemKNNBaseline(x, k=1).scores(np.array([2]))[0]  # user 2 has 1 and 2; 1's nearest is 0
    assert knn[0] > 0 and knn[3] == 0
    assert EaseBaseline(x, x, l2=1.0).scores(np.array([2]))[0][0] > 0
    # user 2 ended with 1 -> 2: nothing ever followed 2; 1 was followed by 2 twice and by 3 once
    trans = TransitionBaseline(seqs, 4, last=2, decay=0.5).scores(np.array([2]))[0]
    assert trans[2] == pytest.approx(1.0, abs=1e-6) and trans[3] == pytest.approx(0.5, abs=1e-6) and trans[0] < 1e-6


def test_metrics_come_from_ir_measures() -> None:
    pytest.importorskip("ir_measures")
    from services.recs.evaluate import metrics

    found = metrics({"u": ["a", "b"], "v": ["c"], "w": []}, {"u": "b", "v": "c", "w": "z"})
    assert found["HR@10"] == pytest.approx(2 / 3)
    assert found["nDCG@10"] == pytest.approx((1 / np.log2(3) + 1) / 3)

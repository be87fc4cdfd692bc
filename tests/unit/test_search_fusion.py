from __future__ import annotations

import math

import pytest

from services.core.domain import Item
from services.search.fusion import RRFFuser, ScoreFuser, build_fuser, min_max, z_score
from services.search.types import Candidate

pytestmark = pytest.mark.unit


def cand(id: str, **legs: tuple[float, int]) -> Candidate:
    """cand("a", keyword=(score, rank), vector=(score, rank))"""
    return Candidate(id, Item(id=id), {k: s for k, (s, _) in legs.items()}, {k: r for k, (_, r) in legs.items()})


def order(fused: list) -> list[str]:  # type: ignore[type-arg]
    return [f.id for f in fused]


def test_rrf_sums_reciprocal_ranks_per_leg() -> None:
    cands = [
        cand("a", keyword=(9.0, 1), vector=(0.5, 3)),
        cand("b", keyword=(7.0, 2)),
        cand("c", vector=(0.9, 1)),
    ]
    fused = RRFFuser(k=60).run(cands)
    scores = {f.id: f.score for f in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["c"] == pytest.approx(1 / 61)
    assert order(fused) == ["a", "c", "b"]
    assert [f.rank for f in fused] == [1, 2, 3]


def test_rrf_weights_scale_each_leg() -> None:
    cands = [cand("kw", keyword=(5.0, 1)), cand("vec", vector=(0.8, 1))]
    assert order(RRFFuser(k=60, weights={"keyword": 2.0, "vector": 1.0}).run(cands)) == ["kw", "vec"]
    assert order(RRFFuser(k=60, weights={"keyword": 0.5}).run(cands)) == ["vec", "kw"]
    fused = RRFFuser(k=10, weights={"vector": 3.0}).run(cands)
    assert {f.id: f.score for f in fused} == pytest.approx({"kw": 1 / 11, "vec": 3 / 11})


def test_ties_break_by_agreement_then_best_rank_then_id() -> None:
    # b and a tie on score; a was found by two legs, so it goes first; c and d tie fully and sort by id.
    cands = [
        cand("d", keyword=(1.0, 2)),
        cand("c", vector=(1.0, 2)),
        cand("b", keyword=(1.0, 1)),
        cand("a", keyword=(1.0, 3), vector=(1.0, 3)),
    ]
    fused = RRFFuser(k=1, weights={"keyword": 1.0, "vector": 1.0}).run(cands)
    # scores: a = 1/4 + 1/4 = 0.5 = b (1/2); c = d = 1/3
    assert order(fused) == ["a", "b", "c", "d"]


def test_min_max_and_z_score() -> None:
    assert min_max([2.0, 4.0, 6.0]) == [0.0, 0.5, 1.0]
    assert min_max([3.0, 3.0]) == [1.0, 1.0]
    assert min_max([]) == []
    z = z_score([1.0, 2.0, 3.0])
    assert z == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert z_score([5.0, 5.0]) == [0.0, 0.0]


def test_min_max_fusion_weighted_sum_and_missing_leg_scores_zero() -> None:
    cands = [
        cand("a", keyword=(10.0, 1), vector=(0.2, 3)),  # kw 1.0, vec 0.0
        cand("b", keyword=(5.0, 2), vector=(0.6, 2)),  # kw 0.5, vec 0.5
        cand("c", keyword=(0.0, 3)),  # kw 0.0, vec missing -> 0
        cand("d", vector=(1.0, 1)),  # kw missing -> 0, vec 1.0
    ]
    fused = ScoreFuser("minmax", {"keyword": 1.0, "vector": 2.0}).run(cands)
    assert {f.id: f.score for f in fused} == pytest.approx({"a": 1.0, "b": 1.5, "c": 0.0, "d": 2.0})
    assert order(fused) == ["d", "b", "a", "c"]


def test_z_score_fusion_gives_a_missing_leg_its_lowest_value() -> None:
    cands = [
        cand("a", keyword=(3.0, 1), vector=(0.9, 1)),
        cand("b", keyword=(1.0, 2)),
        cand("c", vector=(0.1, 2)),
    ]
    fused = {f.id: f.score for f in ScoreFuser("zscore").run(cands)}
    # each leg has two values -> z = ±1; the missing leg counts as -1
    assert fused == pytest.approx({"a": 2.0, "b": -2.0, "c": -2.0})


def test_build_fuser_by_name() -> None:
    assert build_fuser("rrf", rrf_k=30).name.startswith("rrf(k=30")
    assert build_fuser("minmax", weights={"vector": 0.8}).name == "minmax(vector=0.8)"
    assert build_fuser("zscore").name.startswith("zscore")
    assert build_fuser("rrf").run([]) == []


def test_typo_fallback_hits_come_fewest_edits_first() -> None:
    from services.core.engines.base import Hit
    from services.search.retrievers import closest_titles

    titles = ["The Aviator", "Avatar", "Avatar: The Way of Water", "Aviatrix"]
    hits = [Hit(f"i{n}", 1.0, Item(id=f"i{n}", title=t)) for n, t in enumerate(titles)]
    # "avaatr": one transposition from "avatar", two edits or more from the others; ties keep the engine's order
    assert [h.item.title for h in closest_titles(hits, "Avaatr")] == [
        "Avatar",
        "Avatar: The Way of Water",
        "The Aviator",
        "Aviatrix",
    ]

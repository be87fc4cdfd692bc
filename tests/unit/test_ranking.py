"""The scoring stage: features, the LambdaRank scorer and its fallback, the registry's refusals, the feature
log, and training by query folds; on small synthetic candidates and a model trained here in a second."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.core.domain import Item
from services.core.engines.base import Hit
from services.core.settings import BlobSettings, CoreSettings
from services.core.storage import LocalBlobStore, S3BlobStore
from services.ranking.feature_log import BlobFeatureSink, FeatureLogger, LocalFeatureSink, read_records
from services.ranking.features import SEARCH_FEATURES, FeatureExtractor, FeatureSet, FeatureSpec
from services.ranking.model import ModelCard, ModelError, ModelRefused, RankingModel
from services.ranking.registry import ModelRegistry, load_default_model
from services.ranking.scorer import LambdaRankScorer, ModelSlot
from services.ranking.service import build_ranking_service
from services.ranking.settings import FeatureLogSettings, RankingSettings
from services.ranking.text import AnalysedText, Analyser, pair_key
from services.ranking.train import QueryRows, TrainingSet, cross_validate, read_interactions, read_qrels, train_model
from services.search.fusion import RRFFuser
from services.search.types import Candidate, FusedCandidate, SearchQuery

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def item(i: int, title: str, body: str = "", **fields: Any) -> Item:
    return Item.parse({"id": f"d{i}", "title": title, "body": body, **fields})


def fused(rows: list[tuple[Item, dict[str, float], dict[str, int]]]) -> list[FusedCandidate]:
    return RRFFuser().run([Candidate(it.id, it, scores, ranks) for it, scores, ranks in rows])


D1 = item(1, "Wing flutter at supersonic speed", "flutter of wings in supersonic flow", popularity=10)
D2 = item(2, "Boundary layer transition", "the boundary layer on a flat plate", rating=4.5)
D3 = item(3, "Heat transfer in hypersonic flow", "heat transfer supersonic", published_at="2026-05-01T00:00:00Z")
D4 = item(4, "Supersonic wing flutter", "", available=False, categories=["flutter"])
CANDIDATES = [
    (D1, {"keyword": 9.0, "vector": 0.8}, {"keyword": 1, "vector": 2}),
    (D2, {"keyword": 3.0}, {"keyword": 2}),
    (D3, {"vector": 0.9}, {"vector": 1}),
    (D4, {"keyword": 5.0, "vector": 0.5}, {"keyword": 3, "vector": 3}),
]


# ---- features -------------------------------------------------------------------------------------------


def features(query: str = "supersonic wing flutter") -> tuple[list[FusedCandidate], dict[str, dict[str, float]]]:
    cands = fused(CANDIDATES)
    matrix = FeatureExtractor(clock=lambda: NOW).run(SearchQuery(query), cands)
    assert matrix.values.shape == (4, len(SEARCH_FEATURES.names)) and matrix.values.dtype == np.float32
    return cands, {i: matrix.row(n) for n, i in enumerate(matrix.ids)}


def test_retrieval_features_are_normalised_within_the_request() -> None:
    _, f = features()
    assert f["d1"]["keyword_score_rel"] == 1.0 and f["d2"]["keyword_score_rel"] == pytest.approx(3 / 9)
    assert f["d1"]["keyword_rank_inv"] == 1.0 and f["d3"]["keyword_rank_inv"] == 0.0
    assert "keyword_score_rel" not in f["d3"] and "vector_cosine" not in f["d2"]  # missing: NaN, left out
    assert f["d3"]["vector_gap"] == 0.0 and f["d1"]["vector_gap"] == pytest.approx(0.1, abs=1e-6)
    assert f["d1"]["sources"] == 2 and f["d2"]["sources"] == 1
    assert f["d1"]["rrf"] == pytest.approx(1 / 61 + 1 / 62, abs=1e-6)
    assert f["d2"]["keyword_minmax"] == 0.0 and f["d1"]["keyword_minmax"] == 1.0


def test_text_features_read_stems_phrases_and_coverage() -> None:
    _, f = features("supersonic wing flutter")
    assert f["d4"]["title_exact"] == 1.0 and f["d1"]["title_exact"] == 0.0  # "Supersonic wing flutter"
    assert f["d4"]["title_phrase"] == 1.0 and f["d1"]["title_phrase"] == 0.0
    assert f["d1"]["title_coverage"] == 1.0  # "wing" and "wings" share a stem
    assert f["d2"]["title_coverage"] == 0.0 and f["d2"]["title_bm25_rel"] == 0.0
    assert f["d1"]["body_bigrams"] == 0.0 and f["d4"]["title_bigrams"] == 1.0
    assert f["d4"]["category_match"] == pytest.approx(1 / 3)
    assert max(v["title_bm25_rel"] for v in f.values()) == 1.0
    assert f["d1"]["query_terms"] == 3


def test_title_fuzzy_coverage_forgives_a_typo_the_stemmed_features_miss() -> None:
    _, f = features("supersonic wnig fluttr")  # two typos: no stem of the query is in a title
    assert f["d4"]["title_coverage"] == pytest.approx(1 / 3) and f["d4"]["title_phrase"] == 0.0
    assert f["d4"]["title_fuzzy_coverage"] == 1.0  # "wnig" is one swap from "wing", "fluttr" one from "flutter"
    assert f["d1"]["title_fuzzy_coverage"] == 1.0  # "Wing flutter at supersonic speed"
    assert f["d2"]["title_fuzzy_coverage"] == 0.0  # "Boundary layer transition"
    _, f = features("supersnoic")  # a swap in a 10-letter word: within the 2 edits allowed
    assert f["d3"]["title_fuzzy_coverage"] == 0.0 and f["d4"]["title_fuzzy_coverage"] == 1.0
    _, f = features("wign")  # 4 letters allow one edit; a swap is one (as the engines' fuzzy queries count)
    assert f["d4"]["title_fuzzy_coverage"] == 1.0
    _, f = features("wx")  # 2 letters allow none
    assert all(v["title_fuzzy_coverage"] == 0.0 for v in f.values())


def test_item_features() -> None:
    _, f = features()
    assert f["d1"]["popularity_log"] == pytest.approx(math.log1p(10), abs=1e-5)
    assert f["d2"]["rating"] == 4.5 and "rating" not in f["d1"]
    assert f["d3"]["age_log_days"] == pytest.approx(math.log1p(31), abs=1e-5)
    assert f["d4"]["available"] == 0.0 and f["d1"]["available"] == 1.0


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# d4 is d1's near twin, d2 leans towards d1, d3 has no stored vector
VECTORS = {"d1": _unit(1, 0, 0), "d4": _unit(0.9, 0, 0.436), "d2": _unit(0.2, 0.98, 0)}


def test_neighbour_features_read_the_fused_scores_of_the_candidate_and_its_nearest() -> None:
    asked: list[list[str]] = []

    def lookup(ids: Sequence[str]) -> dict[str, np.ndarray]:
        asked.append(list(ids))
        return {i: VECTORS[i] for i in ids if i in VECTORS}

    def sim(a: str, b: str) -> float:
        return float(VECTORS[a] @ VECTORS[b])

    cands = fused(CANDIDATES)
    for k in (1, 2):
        m = FeatureExtractor(clock=lambda: NOW, vectors=lookup, neighbours=k).run(SearchQuery("wing"), cands)
        f = {i: m.row(n) for n, i in enumerate(m.ids)}
        fused_of = {i: f[i]["minmax_fused"] for i in f}
        if k == 1:  # itself (similarity 1) and the single nearest other candidate
            want = (fused_of["d1"] + sim("d1", "d4") * fused_of["d4"]) / (1 + sim("d1", "d4"))
            assert f["d1"]["neighbour_minmax"] == pytest.approx(want, abs=1e-5)
            assert f["d2"]["neighbour_max_minmax"] == pytest.approx(max(fused_of["d1"], fused_of["d2"]), abs=1e-6)
        else:  # d1 itself and its two: d4 (cosine 0.9) and d2 (0.2), weighted by the cosine
            s4, s2 = sim("d1", "d4"), sim("d1", "d2")
            want = (fused_of["d1"] + s4 * fused_of["d4"] + s2 * fused_of["d2"]) / (1 + s4 + s2)
            assert f["d1"]["neighbour_minmax"] == pytest.approx(want, abs=1e-5)
        # Twins share their neighbourhood's best: the better one is not marked down for having a weaker twin
        # (before the candidate counted in its own neighbourhood, d4 got d1's score and d1 only d4's).
        best = max(fused_of["d1"], fused_of["d4"])
        assert f["d1"]["neighbour_max_minmax"] == pytest.approx(best, abs=1e-6)
        assert f["d4"]["neighbour_max_minmax"] == pytest.approx(best, abs=1e-6)
        assert "neighbour_minmax" not in f["d3"] and "neighbour_max_minmax" not in f["d3"]  # no vector: NaN
    assert asked[0] == [c.id for c in cands]  # one read for the request's candidates


def test_neighbour_features_use_the_vectors_that_came_with_the_hits_and_ask_only_for_the_rest() -> None:
    asked: list[list[str]] = []

    def lookup(ids: Sequence[str]) -> dict[str, np.ndarray]:
        asked.append(list(ids))
        return {i: VECTORS[i] for i in ids if i in VECTORS}

    # d1 and d4 came from an engine that fetched their vectors with the hits; d2 and d3 did not
    held = {
        it.id: Hit(it.id, 1.0, it, unpack=(lambda v=VECTORS[it.id]: v) if it.id in ("d1", "d4") else None)
        for it, _, _ in CANDIDATES
    }
    cands = RRFFuser().run([Candidate(it.id, held[it.id], sc, rk) for it, sc, rk in CANDIDATES])
    m = FeatureExtractor(clock=lambda: NOW, vectors=lookup, neighbours=1).run(SearchQuery("wing"), cands)
    assert sorted(asked[0]) == ["d2", "d3"]  # one read, for the two without a vector
    f = {i: m.row(n) for n, i in enumerate(m.ids)}
    s14 = float(VECTORS["d1"] @ VECTORS["d4"])
    want = (f["d1"]["minmax_fused"] + s14 * f["d4"]["minmax_fused"]) / (1 + s14)
    assert f["d1"]["neighbour_minmax"] == pytest.approx(want, abs=1e-5)
    assert f["d2"]["neighbour_max_minmax"] == pytest.approx(
        max(f["d1"]["minmax_fused"], f["d2"]["minmax_fused"]), abs=1e-6
    )
    asked.clear()
    vector_of = {it.id: VECTORS.get(it.id, VECTORS["d2"]) for it, _, _ in CANDIDATES}
    every = {it.id: Hit(it.id, 1.0, it, unpack=partial(vector_of.__getitem__, it.id)) for it, _, _ in CANDIDATES}
    cands = RRFFuser().run([Candidate(it.id, every[it.id], sc, rk) for it, sc, rk in CANDIDATES])
    FeatureExtractor(clock=lambda: NOW, vectors=lookup).run(SearchQuery("wing"), cands)
    assert asked == []  # every vector came with its hit: no read at all


def test_neighbour_features_are_missing_without_vectors_and_a_failed_read_costs_only_them() -> None:
    def broken(ids: Sequence[str]) -> dict[str, np.ndarray]:
        raise ConnectionError("engine down")

    cands = fused(CANDIDATES)
    columns = [SEARCH_FEATURES.names.index(n) for n in ("neighbour_minmax", "neighbour_max_minmax")]
    for extractor in (FeatureExtractor(), FeatureExtractor(vectors=broken)):
        m = extractor.run(SearchQuery("wing"), cands)
        assert np.isnan(m.values[:, columns]).all()
        assert np.isfinite(m.values[:, SEARCH_FEATURES.names.index("minmax_fused")]).all()
    with pytest.raises(ValueError, match="neighbours"):
        FeatureExtractor(neighbours=0)


def test_empty_inputs_compute() -> None:
    extractor = FeatureExtractor()
    assert extractor.run(SearchQuery("anything"), []).values.shape == (0, len(SEARCH_FEATURES.names))
    m = extractor.run(SearchQuery("the of and"), fused(CANDIDATES))  # only stop words: no text signal
    assert np.isfinite(m.values[:, SEARCH_FEATURES.names.index("title_coverage")]).all()


def test_analyser_stems_drops_stop_words_and_remembers() -> None:
    an = Analyser(max_texts=2)
    a, b = an.analyse("The wings of flutter"), an.analyse("wing flutters")
    assert a.length == 2 and set(a.unique.tolist()) == set(b.unique.tolist())
    assert an.analyse("The wings of flutter") is a
    an.analyse("third text")  # the cache holds two: the oldest half goes
    assert an.analyse("The wings of flutter") is not a


def test_analyser_folds_accents_and_keeps_a_text_of_stop_words_alone() -> None:
    an = Analyser()
    assert an.analyse("Amélie").unique.tolist() == an.analyse("amelie").unique.tolist()
    her = an.analyse("Her")  # a film's whole title: matched by the query "her", not empty
    assert her.length == 1 and her.unique.tolist() == an.analyse("her").unique.tolist()
    assert an.analyse("Her story").length == 1  # beside a topic word, a stop word still goes


def test_an_analysed_text_counts_its_terms_and_adjacent_pairs() -> None:
    a = Analyser().analyse_once("Flutter of the wing, flutter wings; flutter")
    terms = a.terms.tolist()
    assert a.length == len(terms) == 5 and a.joined == " " + " ".join(map(str, terms)) + " "
    assert a.unique.tolist() == sorted(set(terms))
    assert dict(zip(a.unique.tolist(), a.counts.tolist(), strict=True)) == {t: terms.count(t) for t in set(terms)}
    assert a.bigrams.tolist() == np.unique(pair_key(a.terms[:-1], a.terms[1:])).tolist()
    assert Analyser().analyse_once("").length == 0


def test_stemming_runs_on_the_c_stemmer() -> None:
    import snowballstemmer

    # PyStemmer (a dependency) gives the pure-Python stemmer's stems ~100x faster: a cold vocabulary was most
    # of a query's ranking time without it.
    assert type(snowballstemmer.stemmer("english")).__module__ == "Stemmer"


class CountingAnalyser(Analyser):
    def __init__(self) -> None:
        super().__init__()
        self.analysed: list[str] = []

    def analyse_once(self, text: str) -> AnalysedText:
        self.analysed.append(text)
        return super().analyse_once(text)


def test_analysed_item_texts_are_kept_by_id_until_the_texts_change() -> None:
    an = CountingAnalyser()
    extractor = FeatureExtractor(an, clock=lambda: NOW, cache_items=10)
    query = SearchQuery("supersonic wing flutter")
    first = extractor.run(query, fused(CANDIDATES))
    assert len(an.analysed) == 3 * len(CANDIDATES)  # title, body, categories of each
    again = extractor.run(query, fused(CANDIDATES))
    assert len(an.analysed) == 3 * len(CANDIDATES)  # nothing analysed twice
    uncached = FeatureExtractor(clock=lambda: NOW, cache_items=0).run(query, fused(CANDIDATES))
    assert np.array_equal(first.values, again.values, equal_nan=True)
    assert np.array_equal(first.values, uncached.values, equal_nan=True)

    renamed = item(2, "Supersonic wing flutter tests", D2.body, rating=4.5)  # d2, updated: new title
    rows = [(renamed if it.id == "d2" else it, s, r) for it, s, r in CANDIDATES]
    updated = extractor.run(query, fused(rows))
    assert "Supersonic wing flutter tests" in an.analysed
    coverage = {i: updated.row(n)["title_coverage"] for n, i in enumerate(updated.ids)}
    assert coverage["d2"] == 1.0  # the new title's terms, not the old one's


def test_the_item_text_cache_holds_nothing_the_cyclic_gc_walks() -> None:
    # Its entries churn with the catalog's long tail; tracked, they made young collections late and long.
    extractor = FeatureExtractor(cache_items=10)
    extractor.run(SearchQuery("flutter"), fused(CANDIDATES))
    held = list(extractor._analysed.values())
    assert len(held) == len(CANDIDATES) and not any(gc.is_tracked(entry) for entry in held)


def test_the_item_text_cache_is_bounded() -> None:
    an = CountingAnalyser()
    extractor = FeatureExtractor(an, cache_items=2)
    for _ in range(2):
        extractor.run(SearchQuery("flutter"), fused(CANDIDATES))
    assert len(an.analysed) > 3 * len(CANDIDATES)  # four items do not fit in two places: some came back


def test_feature_set_mismatch_names_what_differs() -> None:
    fs = SEARCH_FEATURES
    assert fs.mismatch(fs.name, fs.version, fs.names) is None
    assert fs.id in str(fs.mismatch(fs.name, 99, fs.names))
    why = fs.mismatch(fs.name, fs.version, [*fs.names[:-1], "bogus"])
    assert why is not None and fs.names[-1] in why and "bogus" in why
    assert "order" in str(fs.mismatch(fs.name, fs.version, list(reversed(fs.names))))


# ---- a model -------------------------------------------------------------------------------------------


def training_set(feature_set: FeatureSet = SEARCH_FEATURES, queries: int = 12) -> TrainingSet:
    """Queries whose relevant item has a high first feature: a model learns it in a few rounds."""
    rng = np.random.default_rng(1)
    width = len(feature_set.names)
    rows = []
    for q in range(queries):
        x = rng.random((20, width)).astype(np.float32)
        y = np.zeros(20)
        y[3], x[3, 0] = 3, 5.0
        rows.append(QueryRows(f"q{q}", tuple(f"q{q}-d{i}" for i in range(20)), x, y))
    judged = {r.key: {f"{r.key}-d3": 3} for r in rows}
    return TrainingSet(feature_set, FeatureExtractor().params, 100, "synthetic", rows, judged)


@pytest.fixture(scope="module")
def trained() -> tuple[str, ModelCard]:
    t = train_model(training_set(), rounds=10, folds=3, params={"min_data_in_leaf": 5}, model_id="test-model")
    return t.model_text, t.card


def test_training_cross_validates_by_query_and_records_the_artifact(trained: tuple[str, ModelCard]) -> None:
    _, card = trained
    assert card.features == list(SEARCH_FEATURES.names) and card.feature_version == SEARCH_FEATURES.version
    assert card.training.queries == 12 and card.training.rows == 240 and len(card.training.fingerprint) == 64
    assert card.metrics["cv3_ndcg@10"] > card.metrics["cv3_fused_ndcg@10"]
    assert next(iter(card.feature_importance)) == SEARCH_FEATURES.names[0]
    cv = cross_validate(training_set(), rounds=5, folds=3, params={"min_data_in_leaf": 5})
    assert len(cv.ndcg10) == 3 and sorted(cv.run) == sorted(f"q{i}" for i in range(12))  # each query held out once
    assert training_set().fingerprint() == training_set().fingerprint() != training_set(queries=11).fingerprint()


def scorer_for(model: RankingModel | None, window: int = 100) -> LambdaRankScorer:
    return LambdaRankScorer(ModelSlot(model, "no model loaded"), FeatureExtractor(), window=window)


def test_scorer_orders_by_the_model_and_attaches_features(trained: tuple[str, ModelCard]) -> None:
    model = RankingModel.from_text(*trained)
    cands = fused(CANDIDATES)
    scorer = scorer_for(model)
    out = scorer.run(SearchQuery("supersonic wing flutter"), cands)
    assert sorted(c.id for c in out) == sorted(c.id for c in cands) and [c.rank for c in out] == [1, 2, 3, 4]
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    assert "keyword_present" in out[0].features and scorer.name.startswith("lambdarank(model=test-model")
    assert scorer.metrics.snapshot()["scored_by_model"] == 1


def test_scorer_window_keeps_the_tail_in_fused_order(trained: tuple[str, ModelCard]) -> None:
    cands = fused(CANDIDATES)
    out = scorer_for(RankingModel.from_text(*trained), window=2).run(SearchQuery("flutter"), cands)
    assert [c.id for c in out[2:]] == [c.id for c in cands[2:]] and not out[3].features
    assert out[2].score < min(out[0].score, out[1].score)


def test_no_model_falls_back_to_the_fused_order_and_says_so() -> None:
    cands = fused(CANDIDATES)
    scorer = scorer_for(None)
    out = scorer.run(SearchQuery("flutter"), cands)
    assert [c.id for c in out] == [c.id for c in cands]
    assert [c.score for c in out] == [c.score for c in cands]
    assert scorer.name == "fused order (fallback: no model loaded)"
    assert scorer.metrics.snapshot()["fallbacks"] == {"no model": 1}


class RefusingExtractor(FeatureExtractor):
    """A fake extractor that fails the test if anyone asks it for features."""

    def run(self, query: SearchQuery, candidates: Any) -> Any:
        raise AssertionError("features computed with nobody to read them")


def test_without_a_model_or_a_feature_log_no_features_are_computed() -> None:
    cands = fused(CANDIDATES)
    out = LambdaRankScorer(ModelSlot(None, "model set to 'none'"), RefusingExtractor()).run(
        SearchQuery("flutter"), cands
    )
    assert [c.id for c in out] == [c.id for c in cands] and not any(c.features for c in out)


class Broken(RankingModel):
    def predict(self, values: Any) -> Any:
        raise RuntimeError("corrupt trees")


def test_a_model_failing_on_a_request_is_taken_out_and_the_request_still_answers(
    trained: tuple[str, ModelCard],
) -> None:
    good = RankingModel.from_text(*trained)
    broken = Broken(good._booster, good.card)
    scorer = scorer_for(broken)
    cands = fused(CANDIDATES)
    out = scorer.run(SearchQuery("flutter"), cands)
    assert [c.id for c in out] == [c.id for c in cands]
    assert "corrupt trees" in scorer.name and scorer.slot.state.model is None
    snap = scorer.metrics.snapshot()
    assert snap["fallbacks"] == {"model failed": 1} and snap["model_errors"] == 1
    scorer.slot.swap(good)  # a reload puts a model back
    assert scorer.name.startswith("lambdarank")


# ---- registry ------------------------------------------------------------------------------------------


def test_registry_publishes_loads_and_points_current(tmp_path: Path, trained: tuple[str, ModelCard]) -> None:
    text, card = trained
    reg = ModelRegistry(LocalBlobStore(tmp_path / "models"))
    assert reg.current_id() is None and reg.resolve("current").model_id.startswith("default-")  # shipped default
    reg.publish(text, card, make_current=True)
    assert reg.current_id() == "test-model" and reg.resolve("current").model_id == "test-model"
    assert [c.model_id for c in reg.cards()] == ["test-model"] and reg.resolve("none") is None
    with pytest.raises(ModelError, match="no model 'missing'"):
        reg.load("missing")
    (tmp_path / "models" / "test-model" / "model.txt").write_text("not a model")
    with pytest.raises(ModelError, match="does not load"):
        reg.load("test-model")


def test_a_model_with_another_feature_list_is_refused_with_the_reason(tmp_path: Path) -> None:
    other = FeatureSet("trawl-search", SEARCH_FEATURES.version, (*SEARCH_FEATURES.features[:-1], FeatureSpec("x", "")))
    t = train_model(training_set(other), rounds=3, folds=0, params={"min_data_in_leaf": 5}, model_id="wrong-features")
    model = RankingModel.from_text(t.model_text, t.card)
    refused = r"model wrong-features refused: .*missing \['neighbour_max_minmax'\], unknown \['x'\]"
    with pytest.raises(ModelRefused, match=refused):
        model.check(SEARCH_FEATURES, FeatureExtractor().params)
    good = train_model(training_set(), rounds=3, folds=0, params={"min_data_in_leaf": 5}, model_id="other-prf")
    with pytest.raises(ModelRefused, match=r"extractor parameters differ.*prf_docs=\(10, 99\)"):
        good.load().check(SEARCH_FEATURES, {**FeatureExtractor().params, "prf_docs": 99})


def test_the_service_reads_candidate_vectors_unless_told_not_to(tmp_path: Path) -> None:
    core = CoreSettings(data_dir=tmp_path / "var")
    logged = FeatureLogSettings(enabled=True)  # without a model, the features are computed for the log
    asked: list[int] = []

    def lookup(ids: Sequence[str]) -> dict[str, np.ndarray]:
        asked.append(len(ids))
        return {i: VECTORS[i] for i in ids if i in VECTORS}

    for enabled in (True, False):
        settings = RankingSettings(model="none", feature_log=logged, neighbour_vectors=enabled)
        service = build_ranking_service(core, settings, lookup)
        scored = service.scorer.run(SearchQuery("wing"), fused(CANDIDATES))
        row = next(c for c in scored if c.id == "d1")
        assert row.features is not None
        assert ("neighbour_minmax" in row.features) is enabled
        service.close()
    assert asked == [4]  # read once, by the service that was told to


def test_the_service_refuses_a_bad_model_and_keeps_serving_the_old_one(
    tmp_path: Path, trained: tuple[str, ModelCard]
) -> None:
    core = CoreSettings(data_dir=tmp_path / "var")
    service = build_ranking_service(core, RankingSettings(model="none", feature_log=FeatureLogSettings(enabled=False)))
    assert service.state().model is None
    text, card = trained
    service.registry.publish(text, card)
    assert service.reload("test-model").served is not None
    newer = SEARCH_FEATURES.version + 1
    other = FeatureSet("trawl-search", newer, SEARCH_FEATURES.features)
    bad = train_model(training_set(other), rounds=3, folds=0, params={"min_data_in_leaf": 5}, model_id="next-model")
    service.registry.publish(bad.model_text, bad.card)
    with pytest.raises(ModelRefused, match=f"trained on feature set trawl-search@{newer}"):
        service.reload("next-model")
    assert service.state().model is not None and service.state().model.model_id == "test-model"  # type: ignore[union-attr]
    assert service.metrics.snapshot()["refused"] == 1
    service.close()


def test_a_missing_model_at_start_serves_the_fused_order_and_says_why(tmp_path: Path) -> None:
    core = CoreSettings(data_dir=tmp_path / "var")
    service = build_ranking_service(core, RankingSettings(model="nope", feature_log=FeatureLogSettings(enabled=False)))
    assert service.state().model is None and "no model 'nope'" in service.scorer.name


def test_the_shipped_default_model_fits_the_service() -> None:
    model = load_default_model()
    model.check(SEARCH_FEATURES, FeatureExtractor().params)
    assert model.card.training.queries >= 200 and model.card.metrics


def test_registry_and_feature_log_on_s3(s3_settings: BlobSettings, trained: tuple[str, ModelCard]) -> None:
    store = S3BlobStore(s3_settings)
    store.ensure_bucket()
    reg = ModelRegistry(store)
    reg.publish(*trained, make_current=True)
    assert reg.resolve("current").model_id == "test-model"
    sink = BlobFeatureSink(S3BlobStore(s3_settings))
    logger = FeatureLogger(sink, flush_every_s=0.05)
    scorer = LambdaRankScorer(ModelSlot(None), FeatureExtractor(), feature_log=logger)
    scorer.run(SearchQuery("flutter", query_id="q-s3"), fused(CANDIDATES))
    assert logger.flush()
    assert [r["query_id"] for r in read_records(sink)] == ["q-s3"]
    logger.close()


# ---- feature log and training from interactions ----------------------------------------------------------


def test_feature_log_writes_one_line_per_query_per_day_and_trains_from_interactions(tmp_path: Path) -> None:
    sink = LocalFeatureSink(tmp_path / "log")
    logger = FeatureLogger(sink, flush_every_s=0.05)
    scorer = LambdaRankScorer(ModelSlot(None), FeatureExtractor(), feature_log=logger, log_depth=3)
    for n in range(12):
        scorer.run(SearchQuery("supersonic wing flutter", query_id=f"q{n}"), fused(CANDIDATES))
    assert logger.flush()
    day = datetime.now(UTC).date()
    assert sink.days() == [day] and (tmp_path / "log" / f"{day.isoformat()}.jsonl").exists()
    records = list(read_records(sink))
    assert len(records) == 12 and len(records[0]["items"]) == 3
    assert records[0]["features"] == list(SEARCH_FEATURES.names) and records[0]["model"] is None
    assert None in records[0]["items"][1]["values"]  # NaN is logged as null

    lines = [{"query_id": f"q{n}", "item_id": "d4" if n % 2 else "d1", "type": "click"} for n in range(12)]
    lines.append({"query_id": "q0", "item_id": "d1", "type": "purchase"})
    (tmp_path / "interactions.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    labels = read_interactions(tmp_path / "interactions.jsonl")
    assert labels["q0"] == {"d1": 3} and labels["q1"] == {"d4": 1}
    from services.ranking.train import rows_from_feature_log

    ts = rows_from_feature_log(records, labels, FeatureExtractor(), window=100)
    assert len(ts.queries) == 12 and ts.queries[0].values.shape == (3, len(SEARCH_FEATURES.names))
    assert np.isnan(ts.queries[0].values).any()
    t = train_model(ts, rounds=3, folds=3, params={"min_data_in_leaf": 1})
    assert t.card.training.source == "interactions" and t.card.training.relevant_rows >= 12
    logger.close()


def test_the_feature_log_samples_one_query_in_n(tmp_path: Path) -> None:
    sink = LocalFeatureSink(tmp_path / "log")
    logger = FeatureLogger(sink, flush_every_s=0.05, sample_every=3)
    scorer = LambdaRankScorer(ModelSlot(None), FeatureExtractor(), feature_log=logger)
    for n in range(7):
        scorer.run(SearchQuery("supersonic wing flutter", query_id=f"q{n}"), fused(CANDIDATES))
    assert logger.flush()
    logger.close()
    assert [r["query_id"] for r in read_records(sink)] == ["q0", "q3", "q6"]


def test_a_query_without_candidates_is_logged_and_the_log_goes_on(tmp_path: Path) -> None:
    sink = LocalFeatureSink(tmp_path / "log")
    logger = FeatureLogger(sink, flush_every_s=0.05)
    scorer = LambdaRankScorer(ModelSlot(None), FeatureExtractor(), feature_log=logger)
    scorer.run(SearchQuery("nothing matches", query_id="empty"), [])
    scorer.run(SearchQuery("supersonic wing flutter", query_id="next"), fused(CANDIDATES))
    assert logger.flush()
    logger.close()
    records = list(read_records(sink))
    assert [r["query_id"] for r in records] == ["empty", "next"] and records[0]["items"] == []


def test_qrels_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("1 0 d1 2\n1 0 d2 0\n2 d3 1\n# comment\n")
    assert read_qrels(tmp_path / "q.txt") == {"1": {"d1": 2, "d2": 0}, "2": {"d3": 1}}
    (tmp_path / "bad.txt").write_text("1 d1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        read_qrels(tmp_path / "bad.txt")


def test_recency_uses_the_clock() -> None:
    later = FeatureExtractor(clock=lambda: NOW + timedelta(days=69))
    m = later.run(SearchQuery("heat"), fused(CANDIDATES))
    assert m.row(m.ids.index("d3"))["age_log_days"] == pytest.approx(math.log1p(100), abs=1e-5)

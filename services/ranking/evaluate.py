"""Ranking quality on real judgments: Cranfield, ingested through the engine contract (embedded engine, real
embeddings), every query run through the pipeline classes the API serves with.

    python -m services.ranking.evaluate                  # table on stdout, JSON and PNG under docs/results/
    python -m services.ranking.evaluate --write-default-model services/ranking/default_model
    python -m services.ranking.evaluate mslr --train msn1.fold1.train.5k.txt --test msn1.fold1.test.5k.txt

Systems, side by side: BM25 alone, vector alone, hybrid with RRF, hybrid with min-max (equal weights, and
0.3 BM25 + 0.7 vector as in the data README); the same after the pipeline's pseudo-relevance feedback stage
(`services.search.feedback`); and LambdaRank over the hybrid RRF candidates, with and without feedback,
cross-validated by query (each query scored by the model of the fold that held it out; one variant chooses
its parameters by an inner CV on the training folds only). nDCG@10 (gain 5 - code), recall@100 and MRR@10,
computed with ir-measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.ranking.features import FeatureExtractor
from services.ranking.model import RankingModel
from services.ranking.scorer import LambdaRankScorer, ModelSlot
from services.ranking.train import (
    DEFAULT_PARAMS,
    DEFAULT_ROUNDS,
    TrainingSet,
    fit,
    fold_keys,
    known_item_queries,
    rows_from_judgments,
    select_params,
    train_model,
)
from services.search.types import Candidate, CandidateSet, SearchQuery, normalise_text

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
Run = dict[str, dict[str, float]]


class MemoGenerator:
    """The candidate generator with its answers remembered per query: every system of the comparison sees
    the same candidates, and retrieval runs once per query. A single leg's list is the candidates that leg
    returned, with that leg's score and rank only (what the leg alone returns)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._seen: dict[tuple[str, int], CandidateSet] = {}

    @property
    def names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self._inner.names
        return names

    @property
    def name(self) -> str:
        name: str = self._inner.name
        return name

    def run(self, query: SearchQuery) -> CandidateSet:
        key = (query.text, query.depth)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self._inner.run(dataclasses.replace(query, legs=None))
        if query.legs is None:
            return found
        legs = set(query.legs)
        only = [
            Candidate(
                c.id,
                c.item,
                {k: v for k, v in c.scores.items() if k in legs},
                {k: v for k, v in c.ranks.items() if k in legs},
            )
            for c in found.candidates
            if legs & set(c.ranks)
        ]
        return CandidateSet(only, tuple(leg for leg in found.legs if leg.name in legs))


@dataclass(frozen=True)
class SystemResult:
    name: str
    ndcg10: float
    recall100: float
    mrr10: float
    per_query_ndcg10: dict[str, float]


def measure(name: str, run: Run, qrels: Mapping[str, Mapping[str, int]]) -> SystemResult:
    import ir_measures
    from ir_measures import RR, R, nDCG

    judged = {q: dict(j) for q, j in qrels.items() if q in run and j}
    measures = [nDCG @ 10, R @ 100, RR @ 10]
    agg = ir_measures.calc_aggregate(measures, judged, run)
    per_query = {m.query_id: float(m.value) for m in ir_measures.iter_calc([nDCG @ 10], judged, run)}
    return SystemResult(name, float(agg[nDCG @ 10]), float(agg[R @ 100]), float(agg[RR @ 10]), per_query)


def _embed_cached(embedder: Any, texts: Sequence[str], cache: Path | None) -> np.ndarray[Any, Any]:
    key = hashlib.sha256((embedder.model_id + "\n" + "\n".join(texts)).encode()).hexdigest()[:16]
    path = cache / f"vectors-{key}.npy" if cache else None
    if path is not None and path.exists():
        loaded: np.ndarray[Any, Any] = np.load(path)
        return loaded
    vectors: np.ndarray[Any, Any] = embedder.embed(list(texts))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def embed_items(embedder: Any, items: Sequence[Any], cache: Path | None) -> np.ndarray[Any, Any]:
    """The items' vectors of the text ingestion embeds (its default fields and length), cached by content."""
    from indexer.settings import PipelineSettings
    from indexer.text import compose_text

    pipe = PipelineSettings()
    return _embed_cached(embedder, [compose_text(i, pipe.embed_fields, pipe.embed_max_chars) for i in items], cache)


def fill_index(engine: Any, alias: str, embedder: Any, items: Sequence[Any], vectors: np.ndarray[Any, Any]) -> None:
    """A first version under `alias`, live, holding the items with their vectors, searchable on return."""
    from services.core.engines.base import Document

    version = engine.create_version(alias, dimension=embedder.dimension, model_id=embedder.model_id)
    engine.point_alias(alias, version.version)
    result = engine.upsert(alias, [Document(i, v) for i, v in zip(items, vectors, strict=True)])
    assert result.ok, result.failed[:3]
    engine.refresh(alias)


def evaluate_cranfield(
    *,
    data_dir: Path | None = None,
    folds: int = 5,
    window: int = 100,
    depth: int = 200,
    rounds: int = DEFAULT_ROUNDS,
    params: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    default_model_dir: Path | None = None,
    known_items: int = 150,
    films: int = 0,
    film_queries: tuple[int, int] = (300, 100),
    seeds: Sequence[int] = (1, 2, 3, 4, 5),
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run the whole comparison; returns the report (also what the JSON holds). `films` > 0 adds queries
    derived from that many films (`services.ranking.evaluate_films`, the training half: `film_queries` titles,
    as many with a typo, people of each kind) to the shipped recipe's training, never measured here."""
    from services.core.domain import Item
    from services.core.embedding import SentenceTransformerEmbedder
    from services.core.engines.embedded import EmbeddedEngine
    from services.core.settings import CoreSettings
    from services.datasets import cranfield
    from services.search.cache import CachingEmbedder
    from services.search.facets import FacetCounter
    from services.search.feedback import FeedbackGenerator, FeedbackSettings
    from services.search.fusion import RRFFuser, ScoreFuser
    from services.search.pipeline import SearchPipeline
    from services.search.protocols import Fuser, Scorer
    from services.search.reranking import NoopReranker
    from services.search.retrievers import CandidateGenerator, KeywordRetriever, VectorRetriever
    from services.search.scoring import PassthroughScorer

    started = time.perf_counter()
    folder = data_dir or cranfield.DEFAULT_DIR
    docs = cranfield.load_docs(folder)
    texts = cranfield.load_queries(folder)
    qrels = cranfield.load_qrels(folder)
    queries = {str(i): t for i, t in enumerate(texts, start=1)}  # judgments number queries by position
    items = [Item.parse(cranfield.as_item(d)) for d in docs]

    with tempfile.TemporaryDirectory(prefix="trawl-eval-") as tmp:
        core = CoreSettings(engine="embedded", data_dir=Path(tmp) / "var", index_alias="cranfield")
        embedder = SentenceTransformerEmbedder(core.embedding)
        progress(f"embedding {len(items)} documents ({embedder.model_id})")
        vectors = embed_items(embedder, items, cache_dir)
        engine = EmbeddedEngine(core)
        try:
            fill_index(engine, core.index_alias, embedder, items, vectors)
            # Cranfield has only titles and abstracts (authors land in `brand`): BM25 over title and body, equal
            # weights; the catalog default (title x3, brand, tags, ...) suits product and film catalogs.
            boosts = {"title": 1.0, "body": 1.0}
            keyword = KeywordRetriever(engine, core.index_alias, boosts=boosts)
            vector = VectorRetriever(engine, core.index_alias, CachingEmbedder(embedder))
            plain_generator = MemoGenerator(CandidateGenerator([keyword, vector]))
            # The platform's feedback stage with its default settings (20 weighted terms from the top 10, Rocchio
            # on the top 5); its first pass is the plain generator's (remembered), fused by RRF as the service does.
            feedback = FeedbackSettings(enabled=True)
            feedback_generator = MemoGenerator(
                FeedbackGenerator(
                    plain_generator,
                    RRFFuser(60),
                    keyword,
                    vector,
                    engine,
                    core.index_alias,
                    feedback,
                )
            )
            facets = FacetCounter(core.catalog)

            def run_system(
                name: str,
                fuser: Fuser,
                scorer: Scorer,
                legs: tuple[str, ...] | None,
                keys: Sequence[str],
                generator: MemoGenerator = plain_generator,
            ) -> Run:
                pipeline = SearchPipeline(generator, fuser, scorer, NoopReranker(), facets)
                out: Run = {}
                for key in keys:
                    text = normalise_text(queries[key])
                    if not text:
                        continue
                    res = pipeline.run(SearchQuery(text, depth=depth, legs=legs), size=100)
                    out[key] = {c.id: float(-c.rank) for c in res.items}
                return out

            keys = [k for k in queries if k in qrels]
            systems: list[SystemResult] = []
            plain = PassthroughScorer()
            baselines: list[tuple[str, Fuser, tuple[str, ...] | None, MemoGenerator]] = [
                ("BM25", RRFFuser(60), ("keyword",), plain_generator),
                ("vector", RRFFuser(60), ("vector",), plain_generator),
                ("hybrid RRF (k=60)", RRFFuser(60), None, plain_generator),
                ("hybrid min-max (equal weights)", ScoreFuser("minmax"), None, plain_generator),
                (
                    "hybrid min-max (0.3 BM25 + 0.7 vector)",
                    ScoreFuser("minmax", {"keyword": 0.3, "vector": 0.7}),
                    None,
                    plain_generator,
                ),
                (
                    f"BM25 + PRF ({feedback.terms} weighted terms from the hybrid top {feedback.docs})",
                    RRFFuser(60),
                    ("keyword",),
                    feedback_generator,
                ),
                ("vector + PRF (Rocchio, top 5)", RRFFuser(60), ("vector",), feedback_generator),
                ("hybrid + PRF, RRF (k=60)", RRFFuser(60), None, feedback_generator),
                ("hybrid + PRF, min-max (equal weights)", ScoreFuser("minmax"), None, feedback_generator),
                (
                    "hybrid + PRF, min-max (0.2 BM25 + 0.8 vector)",
                    ScoreFuser("minmax", {"keyword": 0.2, "vector": 0.8}),
                    None,
                    feedback_generator,
                ),
            ]
            for name, fuser, legs, gen in baselines:
                progress(f"running {name}")
                systems.append(measure(name, run_system(name, fuser, plain, legs, keys, gen), qrels))

            extractor = FeatureExtractor(vectors=lambda ids: engine.get_vectors(core.index_alias, ids))
            ki_queries, ki_qrels = known_item_queries([(i.id, i.title) for i in items], known_items)
            merged = {**DEFAULT_PARAMS, **(params or {})}
            selections: list[dict[str, Any]] = []

            def training_sets(gen: MemoGenerator, label: str, known: bool) -> tuple[TrainingSet, TrainingSet]:
                progress(f"features of the top {window} RRF candidates of {len(keys)} queries ({label})")
                ts = rows_from_judgments(
                    gen,
                    RRFFuser(60),
                    extractor,
                    queries,
                    qrels,
                    window=window,
                    depth=depth,
                    source=f"qrels:cranfield{label}",
                )
                if not known:
                    return ts, ts
                progress(f"features of {known_items} known-item (title) queries, for training only ({label})")
                ts_ki = rows_from_judgments(
                    gen,
                    RRFFuser(60),
                    extractor,
                    ki_queries,
                    ki_qrels,
                    window=window,
                    depth=depth,
                    source=f"known-items:cranfield-titles{label}",
                )
                return ts, ts.extended(ts_ki, train_only=True)

            def cv_system(
                name: str,
                training: TrainingSet,
                gen: MemoGenerator,
                tuned: bool,
                also: MemoGenerator | None = None,
                seed: int | None = None,
                without_vectors: bool = False,
            ) -> SystemResult:
                """Cross-validated by query; recorded among the systems unless a `seed` replaces the default.
                `without_vectors` also serves the same models with the neighbour features missing (what a
                deployment that turns the vector read off gets)."""
                runs: dict[MemoGenerator, Run] = {gen: {}}
                if also is not None:
                    runs[also] = {}
                blind: Run = {}
                for k, held_out in enumerate(splits):
                    held = set(held_out)
                    train_keys = [q.key for q in training.queries if q.key not in held]
                    fold_params, fold_rounds = (merged if seed is None else {**merged, "seed": seed}), rounds
                    if tuned:
                        progress(f"{name}: choosing parameters on the training folds of fold {k + 1}/{folds}")
                        chosen = select_params(training, train_keys, base=params)
                        fold_params, fold_rounds = chosen.params, chosen.rounds
                        selections.append(
                            {
                                "fold": k + 1,
                                "rounds": chosen.rounds,
                                "inner_ndcg@10": round(chosen.ndcg10, 4),
                                **{p: chosen.params[p] for p in ("num_leaves", "min_data_in_leaf", "lambda_l2")},
                            }
                        )
                    progress(f"{name} fold {k + 1}/{folds}" + (f" (seed {seed})" if seed is not None else ""))
                    booster = fit(training, train_keys, fold_params, fold_rounds)
                    fold_model = _fold_model(booster, training, fold_params, fold_rounds, f"cranfield-fold{k + 1}")
                    scorer = LambdaRankScorer(ModelSlot(fold_model), extractor, window=window)
                    for g, run in runs.items():
                        run.update(run_system("ltr", RRFFuser(60), scorer, None, held_out, g))
                    if without_vectors:
                        no_vectors = LambdaRankScorer(ModelSlot(fold_model), FeatureExtractor(), window=window)
                        blind.update(run_system("ltr", RRFFuser(60), no_vectors, None, held_out, gen))
                result = measure(name, runs[gen], qrels)
                if seed is not None:
                    return result
                systems.append(result)
                if also is not None:
                    systems.append(measure(f"{name}, served without PRF", runs[also], qrels))
                if without_vectors:
                    systems.append(measure(f"{name}, served without the neighbour vectors", blind, qrels))
                return result

            ts_plain, ts_plain_all = training_sets(plain_generator, "", known=True)
            ts_shipped, film_rows = ts_plain_all, 0
            if films:
                from services.ranking.evaluate_films import film_index

                with film_index(films, cache_dir, progress) as index:
                    asked = index.queries(titles=film_queries[0], people=film_queries[1], half="train")
                    film_rows = len(asked.text)
                    progress(f"features of {film_rows} film queries (the training half), for training only")
                    film_ts = index.training_set(asked, window=window, depth=depth)
                ts_shipped = ts_plain_all.extended(film_ts, train_only=True)
            ts, ts_all = training_sets(feedback_generator, "+prf", known=True)
            splits = fold_keys([q.key for q in ts.queries], folds)  # the same folds for every variant
            cv_system(f"hybrid RRF + LambdaRank ({folds}-fold CV)", ts_plain, plain_generator, False)
            shipped_label = " — the shipped recipe" if not films else ""
            cv_system(
                f"hybrid RRF + LambdaRank + known-item queries ({folds}-fold CV){shipped_label}",
                ts_plain_all,
                plain_generator,
                False,
            )
            if films:
                cv_system(
                    f"hybrid RRF + LambdaRank + known-item and film queries ({folds}-fold CV) — the shipped recipe",
                    ts_shipped,
                    plain_generator,
                    False,
                )
            prf_ltr = f"hybrid + PRF, RRF + LambdaRank ({folds}-fold CV)"
            cv_system(prf_ltr, ts, feedback_generator, False, without_vectors=True)
            # LightGBM's seed (row and feature bagging) alone moves this row by about as much as one feature
            # does: the same system with other seeds, so that a difference can be read against that spread.
            spread = [cv_system(prf_ltr, ts, feedback_generator, False, seed=s) for s in seeds]
            if spread:
                systems.append(
                    SystemResult(
                        f"{prf_ltr}, mean of LightGBM seeds {seeds[0]}–{seeds[-1]}",
                        float(np.mean([r.ndcg10 for r in spread])),
                        float(np.mean([r.recall100 for r in spread])),
                        float(np.mean([r.mrr10 for r in spread])),
                        {},
                    )
                )
            cv_system(
                f"hybrid + PRF, RRF + LambdaRank, parameters chosen on the training folds ({folds}-fold nested CV)",
                ts,
                feedback_generator,
                True,
            )
            cv_system(
                f"hybrid + PRF, RRF + LambdaRank + known-item queries ({folds}-fold CV)",
                ts_all,
                feedback_generator,
                False,
                also=plain_generator,
            )

            progress("the models on every query (importances; the shipped default when asked)")
            # what carries the PRF model (the one closest to the goal), fitted on every Cranfield query
            prf_booster = fit(ts, None, merged, rounds)
            prf_gain = prf_booster.feature_importance(importance_type="gain")
            prf_importance = {
                n: round(float(g) / (float(prf_gain.sum()) or 1.0), 4)
                for n, g in sorted(zip(ts.feature_set.names, prf_gain, strict=True), key=lambda x: -x[1])
                if g > 0
            }
            # The shipped model serves the service's default pipeline, feedback off: it is trained on plain
            # hybrid candidates (a model trained on feedback candidates loses 0.02 served without them), with
            # parameters chosen by cross-validation on the Cranfield queries.
            shipped = select_params(ts_shipped, [q.key for q in ts_plain.queries], base=params)
            trained = train_model(
                ts_shipped,
                params=shipped.params,
                rounds=shipped.rounds,
                folds=folds,
                model_id=f"default-{ts.feature_set.name}-v{ts.feature_set.version}-cranfield",
                notes=(
                    f"Shipped default: trained on all {len(ts_plain.queries)} Cranfield queries (top-{window} "
                    "hybrid RRF candidates without feedback, as the service serves by default; graded judgments, "
                    f"gain 5 - code), {len(ts_plain_all.queries) - len(ts_plain.queries)} known-item queries "
                    "(a document's title as the query, the document as its answer; training only) and "
                    f"{film_rows} film queries derived from a film catalog's titles, directors and casts (the "
                    "training half, services.ranking.evaluate_films; training only), with "
                    "collection-independent features; parameters chosen by 3-fold CV over the Cranfield queries. "
                    "metrics: k-fold by query over the Cranfield queries."
                ),
            )
            if default_model_dir is not None:
                default_model_dir.mkdir(parents=True, exist_ok=True)
                (default_model_dir / "model.txt").write_text(trained.model_text)
                (default_model_dir / "card.json").write_text(trained.card.model_dump_json(indent=2) + "\n")
        finally:
            engine.close()

    plain_systems = [s for s in systems if "LambdaRank" not in s.name]
    best_plain = max(plain_systems, key=lambda s: s.ndcg10)
    ltr = next(s for s in systems if "nested" in s.name)
    wins = sum(ltr.per_query_ndcg10.get(q, 0) > best_plain.per_query_ndcg10.get(q, 0) for q in ltr.per_query_ndcg10)
    losses = sum(ltr.per_query_ndcg10.get(q, 0) < best_plain.per_query_ndcg10.get(q, 0) for q in ltr.per_query_ndcg10)
    return {
        "collection": "cranfield",
        "documents": len(items),
        "queries": len(keys),
        "engine": "embedded (Tantivy BM25 over title and body, Faiss HNSW)",
        "embedding_model": embedder.model_id,
        "candidate_depth_per_leg": depth,
        "ltr": {
            "window": window,
            "folds": folds,
            "rounds": rounds,
            "params": {k: v for k, v in merged.items() if k != "verbosity"},
            "shipped_params": {
                "rounds": shipped.rounds,
                **{p: shipped.params[p] for p in ("num_leaves", "min_data_in_leaf", "lambda_l2")},
            },
            "feature_set": ts.feature_set.id,
            "known_item_queries": len(ts_all.queries) - len(ts.queries),
            "film_training_queries": {"films": films, "queries": film_rows},
            "prf_model_feature_importance_gain": prf_importance,
            "feedback": feedback.model_dump(),
            "nested_cv_choices": selections,
            "seed_spread": {
                "system": prf_ltr,
                "seeds": list(seeds),
                "ndcg@10": [round(r.ndcg10, 4) for r in spread],
                "mean": round(float(np.mean([r.ndcg10 for r in spread])), 4) if spread else None,
                "sd": round(float(np.std([r.ndcg10 for r in spread], ddof=1)), 4) if len(spread) > 1 else None,
            },
            "feature_importance_gain": trained.card.feature_importance,
            "vs_best_plain_per_query": {"system": best_plain.name, "better": wins, "worse": losses},
        },
        "systems": [
            {
                "name": s.name,
                "ndcg@10": round(s.ndcg10, 4),
                "recall@100": round(s.recall100, 4),
                "mrr@10": round(s.mrr10, 4),
            }
            for s in systems
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _fold_model(booster: Any, ts: TrainingSet, params: Mapping[str, Any], rounds: int, model_id: str) -> RankingModel:
    from services.ranking.model import ModelCard

    card = ModelCard(
        model_id=model_id,
        feature_set=ts.feature_set.name,
        feature_version=ts.feature_set.version,
        features=list(ts.feature_set.names),
        extractor=dict(ts.extractor),
        window=ts.window,
        training=ts.info(),
        params=dict(params),
        rounds=rounds,
    )
    return RankingModel(booster, card)


def table(report: Mapping[str, Any]) -> str:
    rows = [("system", "nDCG@10", "R@100", "MRR@10")]
    rows += [
        (s["name"], f"{s['ndcg@10']:.4f}", f"{s['recall@100']:.4f}", f"{s['mrr@10']:.4f}") for s in report["systems"]
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}  {r[1]:>8}  {r[2]:>7}  {r[3]:>7}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    names = [s["name"].replace(" (", "\n(") for s in systems]
    fig, axes = plt.subplots(1, 3, figsize=(16, 8), sharey=False)
    for ax, metric in zip(axes, ("ndcg@10", "recall@100", "mrr@10"), strict=True):
        values = [s[metric] for s in systems]
        colours = [
            "#1f77b4" if "LambdaRank" in s["name"] else "#6baed6" if "PRF" in s["name"] else "#999999" for s in systems
        ]
        bars = ax.barh(range(len(values)), values, color=colours)
        ax.set_yticks(range(len(values)), names if ax is axes[0] else [""] * len(values), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric)
        ax.set_xlim(0, max(values) * 1.18)
        for bar, v in zip(bars, values, strict=True):
            ax.text(v, bar.get_y() + bar.get_height() / 2, f" {v:.3f}", va="center", fontsize=8)
    fig.suptitle(
        f"Cranfield ({report['queries']} queries, {report['documents']} documents): retrieval, fusion and LambdaRank"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the trainer checked on a known learning-to-rank set -------------------------------------------------


def read_svmlight(path: Path, width: int = 136) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[int]]:
    """LETOR/svmlight rows `label qid:Q f:v ...` -> features, labels, group sizes (rows of a query together)."""
    xs, ys, qids = [], [], []
    for line in path.read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        row = np.zeros(width, dtype=np.float32)
        for p in parts[2:]:
            k, v = p.split(":", 1)
            if 1 <= int(k) <= width:
                row[int(k) - 1] = float(v)
        xs.append(row)
        ys.append(float(parts[0]))
        qids.append(parts[1].split(":", 1)[1])
    groups: list[int] = []
    last = None
    for q in qids:
        if q != last:
            groups.append(0)
            last = q
        groups[-1] += 1
    return np.vstack(xs), np.array(ys), groups


def evaluate_mslr(train: Path, test: Path, rounds: int = 300) -> dict[str, Any]:
    """LambdaRank (this trainer's parameters, exponential gains as LETOR) against a plain regression on the
    same features, nDCG@10 on the test rows (queries without a relevant row count as 0, as trec_eval)."""
    import lightgbm as lgb

    xtr, ytr, gtr = read_svmlight(train)
    xte, yte, gte = read_svmlight(test)
    base = {k: v for k, v in DEFAULT_PARAMS.items() if k not in ("label_gain", "lambdarank_truncation_level")}
    ranker = lgb.train({**base, "min_data_in_leaf": 20}, lgb.Dataset(xtr, ytr, group=gtr), rounds)
    regression = {**base, "objective": "regression", "metric": "l2", "min_data_in_leaf": 20}
    regressor = lgb.train(regression, lgb.Dataset(xtr, ytr), rounds)

    def ndcg(pred: np.ndarray[Any, Any]) -> float:
        out, start = [], 0
        for size in gte:
            y, p = yte[start : start + size], pred[start : start + size]
            start += size
            gains = 2**y - 1
            order = np.argsort(-p, kind="stable")[:10]
            ideal = np.sort(gains)[::-1][:10]
            disc = 1 / np.log2(np.arange(2, 12))
            idcg = float((ideal * disc[: len(ideal)]).sum())
            out.append(float((gains[order] * disc[: len(order)]).sum()) / idcg if idcg > 0 else 0.0)
        return float(np.mean(out))

    return {
        "train_rows": len(ytr),
        "train_queries": len(gtr),
        "test_rows": len(yte),
        "test_queries": len(gte),
        "lambdarank_ndcg@10": round(ndcg(np.asarray(ranker.predict(xte))), 4),
        "regression_ndcg@10": round(ndcg(np.asarray(regressor.predict(xte))), 4),
        "rounds": rounds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ranking.evaluate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--data", type=Path, help="the Cranfield folder (default: ../shared/data/cranfield)")
    parser.add_argument("--json", type=Path, default=RESULTS / "ranking_cranfield.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "ranking_cranfield.png")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "cache", help="document vectors cache")
    parser.add_argument("--write-default-model", type=Path, help="write the model trained on all queries here")
    parser.add_argument("--known-items", type=int, default=150, help="synthetic title queries (training only)")
    parser.add_argument(
        "--films",
        type=int,
        default=0,
        help="also train the shipped recipe on queries derived from this many films (0: Cranfield only)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="LightGBM seeds 1..N for the spread of the PRF LambdaRank row (0: none)"
    )
    mslr = sub.add_parser("mslr", help="the trainer on an MSLR-WEB10K sample (rankeval's test data)")
    mslr.add_argument("--train", type=Path, required=True)
    mslr.add_argument("--test", type=Path, required=True)
    mslr.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "mslr":
        print(json.dumps(evaluate_mslr(args.train, args.test, args.rounds), indent=2))
        return 0
    report = evaluate_cranfield(
        data_dir=args.data,
        folds=args.folds,
        window=args.window,
        rounds=args.rounds,
        cache_dir=args.cache,
        default_model_dir=args.write_default_model,
        known_items=args.known_items,
        films=args.films,
        seeds=tuple(range(1, args.seeds + 1)),
        progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True),
    )
    print(table(report))
    ltr = report["ltr"]
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(ltr["feature_importance_gain"].items())[:8])
    print(
        f"\nLambdaRank vs {ltr['vs_best_plain_per_query']['system']}, per query: "
        f"{ltr['vs_best_plain_per_query']['better']} better, {ltr['vs_best_plain_per_query']['worse']} worse"
    )
    print(f"features carrying the shipped model (share of gain): {top}")
    spread = ltr["seed_spread"]
    if spread["mean"] is not None:
        print(
            f"{spread['system']}, LightGBM seeds {spread['seeds']}: {spread['ndcg@10']} "
            f"(mean {spread['mean']:.4f}, sd {spread['sd'] if spread['sd'] is not None else '-'})"
        )
    prf_top = ", ".join(f"{k} {v:.0%}" for k, v in list(ltr["prf_model_feature_importance_gain"].items())[:10])
    print(f"features carrying the hybrid + PRF model (share of gain): {prf_top}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.png)
    print(f"\nwrote {args.json} and {args.png} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

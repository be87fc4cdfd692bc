"""Benchmark of the scoring stage: 200 candidates per query through `LambdaRankScorer.run` (features, the
shipped model, ordering), and its parts; the rules re-ranker after it. Not a test: numbers go to
docs/benchmarks.md.

    python -m services.ranking.bench [--candidates 200] [--queries 225] [--repeat 3]

Candidates are Cranfield documents (real titles and abstracts): for each query, the documents with the most
idf-weighted query terms, as a keyword leg returns them (features that need two query terms in a text are
computed only where they are, so random documents would flatter the figure), with synthetic retriever scores
and ranks. The documents are written into an embedded engine (with random unit vectors: the cost does not
depend on their values), from which the scorer reads the candidates' vectors for its neighbour features, as
the API's does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.ranking.features import FeatureExtractor
from services.ranking.registry import load_default_model
from services.ranking.scorer import LambdaRankScorer, ModelSlot
from services.search.fusion import RRFFuser
from services.search.types import Candidate, FusedCandidate, SearchQuery, normalise_text

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def _retrieved(items: Sequence[Any], texts: Sequence[str], n: int) -> list[list[int]]:
    """Per query, the `n` items with the highest idf-weighted count of its distinct terms (ties by position)."""
    from collections import defaultdict

    from services.ranking.text import Analyser

    an = Analyser()
    postings: defaultdict[int, list[int]] = defaultdict(list)
    for j, item in enumerate(items):
        for term in an.analyse_once(f"{item.title} {item.body}").unique.tolist():
            postings[term].append(j)
    out = []
    for text in texts:
        score = np.zeros(len(items))
        for term in set(an.term_ids(text).tolist()):
            docs = postings.get(term, [])
            score[docs] += np.log1p((len(items) - len(docs) + 0.5) / (len(docs) + 0.5))
        out.append(np.argsort(-score, kind="stable")[:n].tolist())
    return out


def _candidates(items: Sequence[Any], chosen: Sequence[int]) -> list[FusedCandidate]:
    n = len(chosen)
    cands = []
    for rank, j in enumerate(chosen, start=1):
        scores: dict[str, float] = {}
        ranks: dict[str, int] = {}
        if rank <= int(n * 0.7):
            scores["keyword"], ranks["keyword"] = float(30 - rank * 0.1), rank
        if rank > int(n * 0.3):
            scores["vector"], ranks["vector"] = float(0.8 - rank * 0.001), rank - int(n * 0.3)
        cands.append(Candidate(items[j].id, items[j], scores, ranks))
    return RRFFuser().run(cands)


def _stats(ms: Sequence[float]) -> dict[str, float]:
    s = sorted(ms)
    return {
        "p50": round(statistics.median(s), 3),
        "p95": round(s[int(0.95 * (len(s) - 1))], 3),
        "p99": round(s[int(0.99 * (len(s) - 1))], 3),
        "mean": round(statistics.fmean(s), 3),
    }


def run(candidates: int = 200, queries: int = 225, repeat: int = 3) -> dict[str, Any]:
    from services.core.domain import Item
    from services.datasets import cranfield

    items = [Item.parse(cranfield.as_item(d)) for d in cranfield.load_docs()]
    tmp_engine = tempfile.TemporaryDirectory(prefix="trawl-bench-scoring-")
    engine, alias = _engine_with(items, Path(tmp_engine.name))
    try:
        return _run(items, engine, alias, candidates, queries, repeat)
    finally:
        engine.close()
        tmp_engine.cleanup()


def _engine_with(items: Sequence[Any], folder: Path) -> tuple[Any, str]:
    from services.core.engines.base import Document
    from services.core.engines.embedded import EmbeddedEngine
    from services.core.settings import CoreSettings

    core = CoreSettings(engine="embedded", data_dir=folder, index_alias="bench-scoring")
    engine = EmbeddedEngine(core)
    version = engine.create_version(core.index_alias, dimension=384, model_id="random-unit-vectors")
    engine.point_alias(core.index_alias, version.version)
    vectors = np.random.default_rng(7).normal(size=(len(items), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    result = engine.upsert(core.index_alias, [Document(i, v) for i, v in zip(items, vectors, strict=True)])
    if not result.ok:
        raise RuntimeError(f"writing the bench items failed: {result.failed[:3]}")
    engine.refresh(core.index_alias)
    return engine, core.index_alias


def _run(items: Sequence[Any], engine: Any, alias: str, candidates: int, queries: int, repeat: int) -> dict[str, Any]:
    from services.core.domain import CatalogSchema
    from services.datasets import cranfield
    from services.rules.model import RuleIn
    from services.rules.reranker import RulesReranker
    from services.rules.store import RuleStore

    live = engine.live_version(alias).version

    def vectors(ids: Sequence[str]) -> Any:  # pinned to the live version, as the API's scorer reads them
        return engine.get_vectors(alias, ids, version=live)

    texts = [normalise_text(q) for q in cranfield.load_queries()][:queries]
    lists = [_candidates(items, chosen) for chosen in _retrieved(items, texts, candidates)]
    model = load_default_model()
    lightgbm = load_default_model()  # the same model on LightGBM's predict, beside it
    with tempfile.TemporaryDirectory() as tmp:
        why = model.compile(Path(tmp))  # as the service serves it (RankingSettings.compile_models)
    if why is not None:
        print(f"warning: the model is not compiled ({why}); both predict rows are LightGBM's", file=sys.stderr)

    cold_extractor = FeatureExtractor(vectors=vectors)
    cold = []
    for text, cands in zip(texts, lists, strict=True):  # first sight of every text: analysis included
        t = time.perf_counter()
        cold_extractor.run(SearchQuery(text), cands)
        cold.append((time.perf_counter() - t) * 1000)

    extractor = FeatureExtractor(vectors=vectors)
    scorer = LambdaRankScorer(ModelSlot(model), extractor, window=candidates)
    # the same scorer without a vector lookup (neighbour features missing): what reading the vectors costs
    no_vectors = LambdaRankScorer(ModelSlot(model), FeatureExtractor(), window=candidates)
    for text, cands in zip(texts, lists, strict=True):
        scorer.run(SearchQuery(text), cands)  # warm the analyser's cache, as a serving process is
        no_vectors.run(SearchQuery(text), cands)
    features, predict, predict_lightgbm, total, total_cpu, plain = [], [], [], [], [], []
    for _ in range(repeat):
        for text, cands in zip(texts, lists, strict=True):
            q = SearchQuery(text)
            t0 = time.perf_counter()
            m = extractor.run(q, cands)
            t1 = time.perf_counter()
            model.predict(m.values)
            t2 = time.perf_counter()
            lightgbm.predict(m.values)
            t3 = time.perf_counter()
            c3 = time.thread_time()
            scorer.run(q, cands)
            total_cpu.append((time.thread_time() - c3) * 1000)
            t4 = time.perf_counter()
            features.append((t1 - t0) * 1000)
            predict.append((t2 - t1) * 1000)
            predict_lightgbm.append((t3 - t2) * 1000)
            total.append((t4 - t3) * 1000)
            t5 = time.perf_counter()
            no_vectors.run(q, cands)
            plain.append((time.perf_counter() - t5) * 1000)

    with tempfile.TemporaryDirectory() as tmp:
        store = RuleStore(Path(tmp) / "rules.sqlite")
        store.create(RuleIn(name="avail", action="availability"))
        store.create(RuleIn(name="boost", action="boost", target={"term": {"brand": "x"}}, amount=0.2))
        store.create(RuleIn(name="fresh", action="freshness", half_life_days=30))
        store.create(RuleIn(name="div", action="diversity", field="brand", max_per=2, top_k=10))
        store.create(RuleIn(name="pin", action="pin", items=[items[0].id], when={"query": texts[0]}))
        reranker = RulesReranker(store, CatalogSchema())
        scored = [scorer.run(SearchQuery(t), c) for t, c in zip(texts, lists, strict=True)]
        rules = []
        for text, s in zip(texts, scored, strict=True):
            t = time.perf_counter()
            reranker.run(SearchQuery(text), s)
            rules.append((time.perf_counter() - t) * 1000)
        store.close()

    return {
        "candidates": candidates,
        "queries": len(texts),
        "model": model.model_id,
        "features": len(extractor.feature_set.names),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "scorer_run_ms (features + model + order, warm)": _stats(total),
        "scorer_run_cpu_ms (the same, CPU time of the thread)": _stats(total_cpu),
        "scorer_run_ms without vectors (neighbour features missing; the same run)": _stats(plain),
        "features_ms (warm)": _stats(features),
        "features_ms (cold: every text analysed for the first time)": _stats(cold),
        "model_runtime": model.runtime,
        f"model_predict_ms ({model.runtime}, as served)": _stats(predict),
        "model_predict_ms (LightGBM's predict, the baseline)": _stats(predict_lightgbm),
        "rules_reranker_ms (5 rules, no MMR)": _stats(rules),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ranking.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--queries", type=int, default=225)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_scoring.json", help="where the JSON goes")
    args = parser.parse_args(argv)
    report = {"command": "python -m services.ranking.bench " + " ".join(argv if argv is not None else sys.argv[1:])}
    report |= run(args.candidates, args.queries, args.repeat)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

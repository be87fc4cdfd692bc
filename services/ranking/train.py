"""Training: judged or logged candidates -> LightGBM LambdaRank, cross-validated by query -> a registry artifact.

Two sources of training rows:
- judgments (TREC qrels and the query texts): each query runs through the platform's candidate generation
  and fusion (the classes the API serves with), the extractor computes the features of the top `window`
  fused candidates, and the judgments label them (unjudged = 0);
- joined interaction logs: the feature log (what was served, with its features, by query id) joined with
  interactions reported against those query ids (click 1, add to cart 2, purchase 3, or an explicit label);
  no query is re-run.

    python -m services.ranking.train --qrels q.txt --queries queries.tsv [--publish --make-current]
    python -m services.ranking.train --interactions interactions.jsonl [--publish]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from services.ranking.features import FeatureExtractor, FeatureSet
from services.ranking.model import ModelCard, RankingModel, TrainingInfo
from services.search.protocols import Fuser
from services.search.types import SearchQuery, normalise_text

if TYPE_CHECKING:
    from services.api.settings import ApiSettings
    from services.search.protocols import CandidateSource

log = logging.getLogger(__name__)

Qrels = Mapping[str, Mapping[str, int]]
EVENT_GRADES = {"impression": 0, "view": 0, "click": 1, "add_to_cart": 2, "purchase": 3}

# Small trees, a low learning rate, bagging and a minimum leaf size: fit for a few hundred queries.
# `label_gain` is linear (grade g gains g), as the nDCG the evaluation reports.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "ndcg_eval_at": [10],
    "label_gain": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
    "lambdarank_truncation_level": 20,
    "num_leaves": 7,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 2,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
DEFAULT_ROUNDS = 150


@dataclass(frozen=True)
class QueryRows:
    """One query's candidates: ids in the fused order, their features and labels."""

    key: str
    ids: tuple[str, ...]
    values: npt.NDArray[np.float32]
    labels: npt.NDArray[np.float64]


@dataclass
class TrainingSet:
    feature_set: FeatureSet
    extractor: dict[str, int]
    window: int
    source: str
    queries: list[QueryRows]
    # every judgment per query, also of items the candidates missed (for an honest ideal DCG)
    judged: dict[str, dict[str, int]] = field(default_factory=dict)
    # queries only ever trained on, never held out nor measured (e.g. synthetic known-item queries)
    train_only: frozenset[str] = frozenset()

    def extended(self, other: TrainingSet, *, train_only: bool) -> TrainingSet:
        """This set plus another's queries (of the same feature set); `train_only`: theirs only train."""
        if other.feature_set != self.feature_set:
            raise ValueError("training sets of different feature sets cannot be joined")
        keys = frozenset(q.key for q in other.queries) if train_only else frozenset()
        return TrainingSet(
            self.feature_set,
            self.extractor,
            self.window,
            f"{self.source}+{other.source}",
            self.queries + other.queries,
            {**self.judged, **other.judged},
            self.train_only | other.train_only | keys,
        )

    def stacked(
        self, keys: Iterable[str] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], list[int]]:
        chosen = self.queries if keys is None else [q for q in self.queries if q.key in set(keys)]
        if not chosen:
            width = len(self.feature_set.names)
            return np.zeros((0, width), np.float32), np.zeros(0), []
        return (
            np.vstack([q.values for q in chosen]),
            np.concatenate([q.labels for q in chosen]),
            [len(q.ids) for q in chosen],
        )

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.feature_set.id}|{self.feature_set.digest}|{self.source}".encode())
        for q in sorted(self.queries, key=lambda r: r.key):
            h.update(q.key.encode() + b"\0" + "\0".join(q.ids).encode())
            h.update(np.ascontiguousarray(q.values).tobytes())
            h.update(np.ascontiguousarray(q.labels).tobytes())
        return h.hexdigest()

    def info(self) -> TrainingInfo:
        rows = sum(len(q.ids) for q in self.queries)
        relevant = int(sum(int((q.labels > 0).sum()) for q in self.queries))
        return TrainingInfo(
            train_only_queries=len(self.train_only),
            source=self.source,
            queries=len(self.queries),
            rows=rows,
            relevant_rows=relevant,
            fingerprint=self.fingerprint(),
        )


# ---- reading judgments and interactions ------------------------------------------------------------------


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels: `query iteration doc grade` (or `query doc grade`) per line; grades <= 0 are kept as 0."""
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) not in (3, 4):
            raise ValueError(f"{path}:{n}: expected 'query [iteration] doc grade', got {line!r}")
        query, doc, grade = parts[0], parts[-2], int(parts[-1])
        qrels.setdefault(query, {})[doc] = max(grade, 0)
    return qrels


def read_queries(path: Path) -> dict[str, str]:
    """Queries as `id<TAB>text` lines, or JSON lines `{"id": ..., "text": ...}`."""
    queries: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            data = json.loads(line)
            queries[str(data["id"])] = str(data["text"])
        elif "\t" in line:
            key, text = line.split("\t", 1)
            queries[key.strip()] = text.strip()
        else:
            raise ValueError(f"{path}:{n}: expected 'id<TAB>text' or a JSON object")
    return queries


def read_interactions(path: Path) -> dict[str, dict[str, int]]:
    """Interactions as JSON lines `{"query_id", "item_id", "type"}` (or `"label"`): query id -> item -> grade,
    the highest grade of the item's events for that query (a purchase outranks the click before it)."""
    labels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        data = json.loads(line)
        if "label" in data:
            grade = int(data["label"])
        else:
            kind = str(data.get("type", ""))
            if kind not in EVENT_GRADES:
                raise ValueError(f"{path}:{n}: unknown interaction type {kind!r}; known: {sorted(EVENT_GRADES)}")
            grade = EVENT_GRADES[kind]
        per_query = labels.setdefault(str(data["query_id"]), {})
        item = str(data["item_id"])
        per_query[item] = max(per_query.get(item, 0), grade)
    return labels


# ---- building training sets ------------------------------------------------------------------------------


def rows_from_judgments(
    generator: CandidateSource,
    fuser: Fuser,
    extractor: FeatureExtractor,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    window: int,
    depth: int = 200,
    source: str = "qrels",
    progress: Callable[[int, int], None] | None = None,
) -> TrainingSet:
    """Run each judged query through candidate generation and fusion; label the top `window` candidates."""
    rows: list[QueryRows] = []
    keys = [k for k in queries if k in qrels]
    for n, key in enumerate(keys, start=1):
        text = normalise_text(queries[key])
        if not text:
            continue
        query = SearchQuery(text, depth=depth)
        fused = fuser.run(generator.run(query).candidates)[:window]
        matrix = extractor.run(query, fused)
        judged = qrels[key]
        labels = np.array([float(judged.get(i, 0)) for i in matrix.ids])
        rows.append(QueryRows(key, matrix.ids, matrix.values, labels))
        if progress:
            progress(n, len(keys))
    judged_all = {k: dict(v) for k, v in qrels.items() if k in queries}
    return TrainingSet(extractor.feature_set, extractor.params, window, source, rows, judged_all)


def known_item_queries(
    items: Sequence[tuple[str, str]], count: int, *, seed: int = 0, grade: int = 4
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Synthetic known-item queries: an item's title as the query, the item as its best answer.

    Judgment sets of topical queries (Cranfield's) have no navigational query, so a model trained on them
    alone never learns that a query equal to a title wants that item first (a film or product catalog's most
    common query). Training on these too teaches it, with features that mean the same on any catalog.
    `items`: (id, title) pairs; titles of fewer than two words are skipped (too ambiguous).
    """
    usable = [(i, t) for i, t in items if len(t.split()) >= 2]
    rng = np.random.default_rng(seed)
    chosen = [usable[j] for j in sorted(rng.choice(len(usable), size=min(count, len(usable)), replace=False))]
    return {f"title:{i}": t for i, t in chosen}, {f"title:{i}": {i: grade} for i, _ in chosen}


def rows_from_feature_log(
    records: Iterable[Mapping[str, Any]],
    labels: Qrels,
    extractor: FeatureExtractor,
    *,
    window: int,
    source: str = "interactions",
) -> TrainingSet:
    """Join logged features with interaction labels by query id. Queries without any interaction are left out
    (nothing says which of their items was wanted); logged rows of another feature set are skipped."""
    fs = extractor.feature_set
    rows: list[QueryRows] = []
    skipped = 0
    for record in records:
        key = str(record.get("query_id"))
        if key not in labels:
            continue
        if record.get("feature_set") != fs.id or list(record.get("features", [])) != list(fs.names):
            skipped += 1
            continue
        items = record.get("items", [])
        if not items:
            continue
        values = np.array(
            [[math.nan if v is None else float(v) for v in it["values"]] for it in items], dtype=np.float32
        )
        ids = tuple(str(it["id"]) for it in items)
        judged = labels[key]
        rows.append(QueryRows(key, ids, values, np.array([float(judged.get(i, 0)) for i in ids])))
    if skipped:
        log.warning("feature log: %d queries logged with another feature set than %s were skipped", skipped, fs.id)
    return TrainingSet(fs, extractor.params, window, source, rows, {k: dict(v) for k, v in labels.items()})


# ---- training and cross-validation -----------------------------------------------------------------------


@dataclass(frozen=True)
class CrossValidation:
    folds: int
    ndcg10: list[float]  # per fold, the model on held-out queries
    baseline_ndcg10: list[float]  # per fold, the fused order on the same queries
    run: dict[str, dict[str, float]]  # held-out scores of every query (for evaluations)

    @property
    def mean(self) -> float:
        return float(np.mean(self.ndcg10)) if self.ndcg10 else 0.0

    @property
    def baseline(self) -> float:
        return float(np.mean(self.baseline_ndcg10)) if self.baseline_ndcg10 else 0.0


def fold_keys(keys: Sequence[str], folds: int, seed: int = 0) -> list[list[str]]:
    """Queries split into `folds` groups at random (seeded): every query is held out exactly once."""
    order = np.random.default_rng(seed).permutation(len(keys))
    return [[keys[i] for i in part] for part in np.array_split(order, folds)]


def fit(ts: TrainingSet, keys: Iterable[str] | None, params: Mapping[str, Any], rounds: int) -> Any:
    import lightgbm as lgb

    x, y, groups = ts.stacked(keys)
    if not groups:
        raise ValueError("no training rows: no judged query produced candidates")
    data = lgb.Dataset(x, y, group=groups, feature_name=list(ts.feature_set.names), free_raw_data=True)
    return lgb.train(dict(params), data, num_boost_round=rounds)


def ndcg10(run: Mapping[str, Mapping[str, float]], qrels: Qrels) -> float:
    """Mean nDCG@10 over the run's queries (ir-measures; linear gains, as trec_eval)."""
    import ir_measures
    from ir_measures import nDCG

    judged = {q: {d: int(g) for d, g in qrels.get(q, {}).items()} for q in run}
    judged = {q: j for q, j in judged.items() if j}
    if not judged:
        return 0.0
    scores = ir_measures.calc_aggregate([nDCG @ 10], judged, {q: dict(r) for q, r in run.items() if q in judged})
    return float(scores[nDCG @ 10])


def _fused_run(rows: Iterable[QueryRows]) -> dict[str, dict[str, float]]:
    return {q.key: {i: -float(r) for r, i in enumerate(q.ids)} for q in rows}


def cross_validate(
    ts: TrainingSet,
    *,
    params: Mapping[str, Any] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    folds: int = 5,
    seed: int = 0,
) -> CrossValidation:
    """k-fold by query: each fold's model is trained on the other folds' queries and scored on its own."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    keys = [q.key for q in ts.queries]
    by_key = {q.key: q for q in ts.queries}
    scores, baselines, run = [], [], {}
    for held_out in fold_keys([k for k in keys if k not in ts.train_only], folds, seed):
        held = set(held_out)
        booster = fit(ts, [k for k in keys if k not in held], params, rounds)
        fold_run = {}
        for key in held_out:
            q = by_key[key]
            predicted = booster.predict(q.values, num_threads=1)
            fold_run[key] = {i: float(s) for i, s in zip(q.ids, predicted, strict=True)}
        run.update(fold_run)
        scores.append(ndcg10(fold_run, ts.judged))
        baselines.append(ndcg10(_fused_run(by_key[k] for k in held_out), ts.judged))
    return CrossValidation(folds, scores, baselines, run)


# Candidate settings for `select_params`: small trees with leaf and L2 regularisation (a few hundred queries
# overfit anything bigger); the rounds are read off the same fits (predict with fewer trees). Kept small: on
# Cranfield a wider grid (3/7 leaves x 50/200 rows per leaf x L2 1/10 x 100-400 rounds) spans only
# 0.437-0.452 nDCG@10, within the fold noise, and every point costs a fit per inner fold.
PARAM_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 3, "min_data_in_leaf": 50, "lambda_l2": 1.0},
    {"num_leaves": 7, "min_data_in_leaf": 50, "lambda_l2": 1.0},
)
ROUNDS_GRID: tuple[int, ...] = (150, 300)


@dataclass(frozen=True)
class Selection:
    params: dict[str, Any]
    rounds: int
    ndcg10: float  # the inner cross-validation's, on the training queries only


def select_params(
    ts: TrainingSet,
    keys: Sequence[str],
    *,
    grid: Sequence[Mapping[str, Any]] = PARAM_GRID,
    rounds: Sequence[int] = ROUNDS_GRID,
    folds: int = 3,
    seed: int = 1,
    base: Mapping[str, Any] | None = None,
) -> Selection:
    """The grid point (and number of trees) with the best k-fold nDCG@10 over `keys` (and the train-only
    queries, which always train): it never sees a query outside `keys`, so a test fold stays unseen."""
    base = {**DEFAULT_PARAMS, **(base or {})}
    by_key = {q.key: q for q in ts.queries}
    measured = [k for k in keys if k not in ts.train_only]
    train_always = [q.key for q in ts.queries if q.key in ts.train_only]
    splits = fold_keys(measured, folds, seed)
    best: Selection | None = None
    for point in grid:
        params = {**base, **point}
        runs: dict[int, dict[str, dict[str, float]]] = {r: {} for r in rounds}
        for held_out in splits:
            held = set(held_out)
            booster = fit(ts, [k for k in measured if k not in held] + train_always, params, max(rounds))
            for key in held_out:
                q = by_key[key]
                for r in rounds:
                    predicted = booster.predict(q.values, num_iteration=r, num_threads=1)
                    runs[r][key] = {i: float(v) for i, v in zip(q.ids, predicted, strict=True)}
        for r in rounds:
            score = ndcg10(runs[r], ts.judged)
            if best is None or score > best.ndcg10 + 1e-9:
                best = Selection(params, r, score)
    assert best is not None
    return best


@dataclass(frozen=True)
class TrainedModel:
    model_text: str
    card: ModelCard
    cv: CrossValidation | None

    def load(self) -> RankingModel:
        return RankingModel.from_text(self.model_text, self.card)


def train_model(
    ts: TrainingSet,
    *,
    params: Mapping[str, Any] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    folds: int = 5,
    seed: int = 0,
    model_id: str | None = None,
    notes: str = "",
) -> TrainedModel:
    """Cross-validate (when folds >= 2), then fit on every query; the card records both."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    cv = cross_validate(ts, params=params, rounds=rounds, folds=folds, seed=seed) if folds >= 2 else None
    # (the CV above holds out and measures only the queries not marked train-only)
    booster = fit(ts, None, params, rounds)
    info = ts.info()
    metrics: dict[str, float] = {}
    if cv is not None:
        metrics = {
            f"cv{folds}_ndcg@10": round(cv.mean, 4),
            f"cv{folds}_ndcg@10_std": round(float(np.std(cv.ndcg10)), 4),
            f"cv{folds}_fused_ndcg@10": round(cv.baseline, 4),
        }
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    importance = {
        n: round(float(g) / total, 4)
        for n, g in sorted(zip(ts.feature_set.names, gain, strict=True), key=lambda x: -x[1])
        if g > 0
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    card = ModelCard(
        model_id=model_id or f"{ts.feature_set.name}-v{ts.feature_set.version}-{stamp}-{info.fingerprint[:8]}",
        feature_set=ts.feature_set.name,
        feature_version=ts.feature_set.version,
        features=list(ts.feature_set.names),
        extractor=dict(ts.extractor),
        window=ts.window,
        training=info,
        params={k: v for k, v in params.items() if k != "verbosity"},
        rounds=rounds,
        metrics=metrics,
        feature_importance=importance,
        notes=notes,
    )
    return TrainedModel(booster.model_to_string(), card, cv)


# ---- the entry point -------------------------------------------------------------------------------------


def train(
    settings: ApiSettings,
    *,
    qrels: Path | None = None,
    queries: Path | None = None,
    interactions: Path | None = None,
    folds: int = 5,
    rounds: int = DEFAULT_ROUNDS,
    params: Mapping[str, Any] | None = None,
    publish: bool = True,
    make_current: bool = False,
    output: Path | None = None,
) -> TrainedModel:
    """Train a LambdaRank model for the catalog the settings point at.

    Either `qrels` and `queries` (the queries run through the platform's candidate generation on the live
    index: the engine, the embedding model and the search settings are the API's), or `interactions` (joined
    with the feature log under the settings' feature-log store). `publish` writes the artifact to the
    registry (`make_current`: and points CURRENT at it); `output` also writes model.txt and card.json to a
    folder.
    """
    from services.ranking.feature_log import build_sink, read_records
    from services.ranking.registry import build_registry

    rs = settings.ranking
    if interactions is not None:
        # the logged rows carry their features: the extractor only says which list and parameters they are
        extractor = FeatureExtractor(prf_docs=rs.prf_docs, prf_terms=rs.prf_terms)
        labels = read_interactions(interactions)
        records = read_records(build_sink(settings, rs.feature_log))
        ts = rows_from_feature_log(
            records, labels, extractor, window=rs.window, source=f"interactions:{interactions.name}"
        )
    elif qrels is not None and queries is not None:
        ts = _judged_rows(settings, read_queries(queries), read_qrels(qrels), f"qrels:{qrels.name}")
    else:
        raise ValueError("give qrels and queries, or interactions")
    if not ts.queries:
        raise ValueError(f"no training rows from {ts.source}: no judged query found candidates or a log record")
    trained = train_model(ts, params=params, rounds=rounds, folds=folds)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "model.txt").write_text(trained.model_text)
        (output / "card.json").write_text(trained.card.model_dump_json(indent=2) + "\n")
    if publish:
        build_registry(settings, rs).publish(trained.model_text, trained.card, make_current=make_current)
    return trained


def _judged_rows(settings: ApiSettings, queries: Mapping[str, str], qrels: Qrels, source: str) -> TrainingSet:
    from services.core.embedding import SentenceTransformerEmbedder
    from services.core.engines import build_engine
    from services.search.service import build_search_services

    engine = build_engine(settings)
    rs = settings.ranking
    extractor = FeatureExtractor(
        prf_docs=rs.prf_docs,
        prf_terms=rs.prf_terms,
        # as the API's scorer reads them: a deployment that turns the read off trains a model without them
        vectors=(lambda ids: engine.get_vectors(settings.index_alias, ids)) if rs.neighbour_vectors else None,
    )
    embedder = SentenceTransformerEmbedder(settings.embedding) if settings.load_model else None
    search = build_search_services(settings, settings.search, engine, embedder)
    try:
        pipeline = search.pipeline
        return rows_from_judgments(
            pipeline.generator,
            pipeline.fuser,
            extractor,
            queries,
            qrels,
            window=settings.ranking.window,
            depth=settings.search.candidate_depth,
            source=source,
        )
    finally:
        search.close()
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ranking.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--qrels", type=Path, help="TREC qrels (query [iteration] doc grade)")
    parser.add_argument("--queries", type=Path, help="queries: id<TAB>text or JSON lines {id, text}")
    parser.add_argument("--interactions", type=Path, help="JSON lines {query_id, item_id, type|label}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--no-publish", action="store_true", help="do not write to the registry")
    parser.add_argument("--make-current", action="store_true", help="point the registry's CURRENT at the model")
    parser.add_argument("--output", type=Path, help="also write model.txt and card.json here")
    args = parser.parse_args(argv)
    from services.api.settings import ApiSettings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trained = train(
        ApiSettings(),
        qrels=args.qrels,
        queries=args.queries,
        interactions=args.interactions,
        folds=args.folds,
        rounds=args.rounds,
        publish=not args.no_publish,
        make_current=args.make_current,
        output=args.output,
    )
    print(trained.card.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

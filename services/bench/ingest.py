"""Ingestion throughput, end to end (events accepted -> searchable), next to the raw encode rate of the same
texts with the same model, in the same run.

    python -m services.bench.ingest --items 3000 --batch-sizes 32,64,128 [--stack]

The end-to-end figure runs a real worker process per configuration (embedded engine and SQLite broker by
default; Redis + OpenSearch with --stack) on a fresh index; the clock starts when the first event is
accepted and stops when the last one is searchable (the engine counts every item).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from indexer.celery_app import create_celery
from indexer.ledger import EventLedger, EventState
from indexer.service import IngestService
from indexer.settings import IndexerSettings
from indexer.text import compose_text
from services.core.embedding import build_embedder
from services.core.engines import build_engine
from services.datasets.films import load_films

console = Console()
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def raw_encode_rate(texts: list[str], batch_size: int) -> float:
    settings = IndexerSettings()
    embedder = build_embedder(settings.embedding.model_copy(update={"batch_size": batch_size}))
    embedder.embed(texts[:64])  # warm-up
    start = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - start)


def end_to_end(items: list[dict[str, Any]], batch_size: int, concurrency: int, stack: bool) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="trawl-bench-ingest-"))
    tag = uuid.uuid4().hex[:8]
    env = {
        "TRAWL_DATA_DIR": str(data_dir),
        "TRAWL_INDEX_ALIAS": f"bench-{tag}",
        "TRAWL_PIPELINE__BATCH_SIZE": str(batch_size),
        "TRAWL_EMBEDDING__BATCH_SIZE": str(min(batch_size, 64)),
        "TRAWL_QUEUES__QUEUE": f"bench-{tag}",
        "TRAWL_QUEUES__CONTROL_QUEUE": f"bench-ctl-{tag}",
    }
    if stack:
        env |= {"TRAWL_ENGINE": "opensearch", "TRAWL_BROKER_URL": "redis://127.0.0.1:6379/0"}
    settings = IndexerSettings(
        data_dir=data_dir,
        index_alias=env["TRAWL_INDEX_ALIAS"],
        engine="opensearch" if stack else "embedded",
        broker_url=env.get("TRAWL_BROKER_URL", ""),
        queues={"queue": env["TRAWL_QUEUES__QUEUE"], "control_queue": env["TRAWL_QUEUES__CONTROL_QUEUE"]},
    )
    log = data_dir / "worker.log"
    with open(log, "ab") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", "--concurrency", str(concurrency)],
            env={**os.environ, **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while b"ready." not in log.read_bytes():  # the model is loaded and the queue consumed
            if worker.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.2)
        ledger = EventLedger(data_dir / "ledger.sqlite")
        service = IngestService(ledger, create_celery(settings))
        engine = build_engine(settings)
        start = time.perf_counter()
        for i in range(0, len(items), 1000):
            service.accept([{"op": "upsert", "item": it} for it in items[i : i + 1000]])
        while True:
            counts = ledger.counts()
            if counts[EventState.QUEUED.value] + counts[EventState.PROCESSING.value] == 0:
                break
            time.sleep(0.05)
        engine.refresh(settings.index_alias)
        searchable = engine.count(settings.index_alias)
        seconds = time.perf_counter() - start
        if stack:
            engine.drop_alias(settings.index_alias)
        engine.close()
        return {
            "items_per_s": searchable / seconds,
            "seconds": seconds,
            "searchable": searchable,
            "dead": counts[EventState.DEAD.value],
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--batch-sizes", default="32,64,128")
    parser.add_argument("--concurrency", default="1", help="worker processes to try, e.g. 1,2 (Redis only)")
    parser.add_argument("--stack", action="store_true", help="Redis broker and OpenSearch instead of embedded")
    args = parser.parse_args()
    films = load_films(args.items)
    settings = IndexerSettings()
    texts = [compose_text(f, settings.pipeline.embed_fields, settings.pipeline.embed_max_chars) for f in films]
    items = [f.to_json() for f in films]
    load_before = os.getloadavg()[0]
    console.print(f"{len(texts)} film texts, load average {load_before:.1f}")
    raw = raw_encode_rate(texts, settings.embedding.batch_size)
    console.print(f"raw encode: {raw:.1f} texts/s")
    rows = []
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            console.print(f"end to end: batch {batch}, concurrency {concurrency} ...")
            result = end_to_end(items, batch, concurrency, args.stack)
            rows.append(
                {"batch_size": batch, "concurrency": concurrency, **result, "ratio_to_raw": result["items_per_s"] / raw}
            )
    best = max(rows, key=lambda r: r["items_per_s"])
    table = Table("batch", "workers", "items/s end to end", "raw encode texts/s", "ratio", "seconds", "dead")
    for r in rows:
        table.add_row(
            str(r["batch_size"]),
            str(r["concurrency"]),
            f"{r['items_per_s']:.1f}",
            f"{raw:.1f}",
            f"{r['ratio_to_raw']:.2f}",
            f"{r['seconds']:.1f}",
            str(r["dead"]),
        )
    console.print(table)
    out = {
        "engine": "opensearch" if args.stack else "embedded",
        "items": len(items),
        "raw_encode_per_s": raw,
        "runs": rows,
        "best": best,
        "load_average": [load_before, os.getloadavg()[0]],
        "cores": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_ingest_{out['engine']}.json"
    path.write_text(json.dumps(out, indent=2))
    console.print(
        f"best: batch {best['batch_size']}, {best['concurrency']} worker(s): {best['items_per_s']:.1f} items/s "
        f"= {best['ratio_to_raw']:.2f} x raw; written {path}"
    )


if __name__ == "__main__":
    main()

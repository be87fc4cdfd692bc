"""Interaction events: `POST /v1/events/interactions` through the HTTP service next to the store's own write of
the same batches, in the same run.

    python -m services.bench.events                 # the embedded default (SQLite)
    python -m services.bench.events --opensearch    # the stack's store, on the node at 127.0.0.1:9200
    python -m services.bench.events --quick         # smoke run: 40 requests per measure

Measured for a batch of 1 interaction (a click as it happens) and of 100 (a client that buffers), in rounds
that alternate their order:
  http   POST /v1/events/interactions from a second process on loopback (`services.bench.load`), one
         request at a time, against `python -m services.cli serve` (started without the embedding model)
  raw    `InteractionStore.record` of the same batches in this process, a second handle on the same store
  wait   on OpenSearch, for reference: `record` of a store that waits for the refresh (`wait_for_refresh`),
         as every write did before d60b22e (each request waited for the index's next refresh, up to a second)
Each measure writes its own users, so nothing it writes is shared with another. The store (the SQLite file, or
the OpenSearch indices) is dropped at the end.

JSON: docs/results/bench_events_<engine>.json; the section "Interaction events" of docs/benchmarks.md is rebuilt
from every recorded JSON. A --quick run writes bench_events_<engine>_quick.json only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

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
from services.core.settings import CoreSettings
from services.recs.interactions import Interaction, InteractionStore, InteractionType, build_interaction_store
from services.recs.settings import RecsSettings

console = Console()
DOC = RESULTS.parent / "benchmarks.md"
SECTION = "Interaction events"
PATH = "/v1/events/interactions"
BATCHES = (1, 100)
T0 = datetime(2026, 1, 1, tzinfo=UTC)

Batch = list[dict[str, Any]]


def batches(measure: str, size: int, count: int) -> list[Batch]:
    """`count` batches of `size` clicks, by users of this measure only (10 users, items 0-999)."""
    out: list[Batch] = []
    for b in range(count):
        out.append(
            [
                {
                    "user_id": f"bench-{measure}-{size}-{(b * size + n) % 10}",
                    "item_id": f"item-{(b * 7 + n) % 1000}",
                    "type": "click",
                    "timestamp": (T0 + timedelta(seconds=b * size + n)).isoformat(),
                    "query_id": f"q-{b}",
                    "position": n % 10,
                }
                for n in range(size)
            ]
        )
    return out


def as_interactions(batch: Batch) -> list[Interaction]:
    return [
        Interaction(
            e["user_id"],
            e["item_id"],
            InteractionType(e["type"]),
            datetime.fromisoformat(e["timestamp"]),
            None,
            e["query_id"],
            e["position"],
        )
        for e in batch
    ]


def over_http(url: str) -> Callable[[list[Batch]], Timed]:
    def load(work: list[Batch]) -> Timed:
        return http_load(url, [PATH] * len(work), 1, bodies=[json.dumps({"interactions": b}) for b in work])

    return load


def in_process(store: InteractionStore) -> Callable[[list[Batch]], Timed]:
    def record(batch: Batch) -> int:
        store.record(as_interactions(batch))
        return 200

    return lambda work: run_concurrently(work, record, 1)


def first_of(n: int, measure: Callable[[list[Batch]], Timed]) -> Callable[[list[Batch]], Timed]:
    return lambda work: measure(work[:n])


def run(args: argparse.Namespace) -> dict[str, Any]:
    engine = "opensearch" if args.opensearch else "embedded"
    alias = f"bench-events-{uuid.uuid4().hex[:8]}"
    data_dir = CACHE_ROOT / "events" / alias
    core = CoreSettings(
        engine=engine, data_dir=data_dir, index_alias=alias, opensearch={"hosts": [args.opensearch_url]}
    )
    recs = RecsSettings()
    store: InteractionStore = build_interaction_store(core, recs)  # creates the store before the API opens it
    waiting: InteractionStore | None = None
    if args.opensearch:  # the same store, each write waiting for the refresh as every write did before d60b22e
        waiting = build_interaction_store(core, RecsSettings(interactions_wait_for_refresh=True))
    env = {
        "TRAWL_ENGINE": engine,
        "TRAWL_DATA_DIR": str(data_dir),
        "TRAWL_INDEX_ALIAS": alias,
        "TRAWL_OPENSEARCH__HOSTS": json.dumps([args.opensearch_url]),
        "TRAWL_LOAD_MODEL": "false",  # events need no model; the API starts in seconds
    }
    api = ApiProcess(env, data_dir / "api.log").start()
    results: dict[str, dict[str, Any]] = {}
    try:
        api.wait_ready(120)
        for size in BATCHES:
            runners: dict[str, Callable[[list[Batch]], Timed]] = {"http": over_http(api.url), "raw": in_process(store)}
            rounds, per_round = 2, args.requests // 2
            waits = max(1, min(per_round, args.wait_requests // rounds))  # each waits up to a second
            if waiting is not None:
                runners["wait"] = first_of(waits, in_process(waiting))
            for key, runner in runners.items():  # warm-up: connections, the first write of each user
                runner(batches(f"{key}-warm", size, 5))
            total = rounds * sum(waits if key == "wait" else per_round for key in runners)

            def work(key: str, r: int, size: int = size, n: int = per_round) -> list[Batch]:
                return batches(f"{key}-r{r}", size, n)  # each measure writes its own users' batches

            with Steps(console, f"batch of {size}: {len(runners)} measures", total) as bar:
                results[str(size)] = alternating_rounds(runners, work, rounds, bar)
    finally:
        api.stop()
        drop = getattr(store, "drop", None)
        if drop is not None:
            drop()
        store.close()
        if waiting is not None:
            waiting.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "engine": engine,
        "command": " ".join(["python -m services.bench.events", *(shlex.quote(a) for a in sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "requests_per_measure": args.requests,
        "machine": machine_notes(),
        "results": results,
    }


LABELS = {
    "http": "HTTP endpoint",
    "raw": "store.record, in process",
    "wait": "store.record waiting for the refresh, as before d60b22e",
}


def report(runs: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in sorted(runs, key=lambda r: r["engine"]):
        for size, by_key in r["results"].items():
            for key, lat in by_key.items():
                rows.append(
                    [
                        r["engine"],
                        size,
                        LABELS.get(key, key),
                        f"{lat['p50']:.1f}",
                        f"{lat['p99']:.1f}",
                        str(lat["n"]),
                        str(lat["errors"]),
                    ]
                )
    table = markdown_table(["engine", "batch", "measure", "p50 ms", "p99 ms", "requests", "errors"], rows, 3)
    commands = "\n".join(f"    {r['command']}   # {r['when']}, commit {r['commit']}" for r in runs)
    return (
        "What a client waits for when it records interactions: `POST /v1/events/interactions` (one request at a "
        "time, from a second process on loopback) next to the store's own `record` of the same batches in the "
        "benchmark's process. On OpenSearch the third measure is `record` waiting for the index's refresh, as "
        "every write did until d60b22e: a recorded click is now readable at once through each user's "
        "document (read by id in real time) instead of after the index's next refresh.\n\n"
        f"{table}\n\nMade by:\n\n{commands}\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.bench.events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--opensearch", action="store_true", help="the stack's store instead of SQLite")
    parser.add_argument("--opensearch-url", default="http://127.0.0.1:9200")
    parser.add_argument("--requests", type=int, default=400, help="requests per measure and batch size")
    parser.add_argument("--wait-requests", type=int, default=40, help="of them for the measure that waits")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 requests, a _quick JSON only")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.wait_requests = 40, 6
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"bench_events_{result['engine']}{'_quick' if args.quick else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    console.print(report([result]))
    if not args.quick:
        paths = [p for p in sorted(RESULTS.glob("bench_events_*.json")) if not p.stem.endswith("_quick")]
        replace_section(DOC, SECTION, report([json.loads(p.read_text()) for p in paths]))
        console.print(f"wrote {RESULTS / name} and the section '{SECTION}' of {DOC}")


if __name__ == "__main__":
    main()

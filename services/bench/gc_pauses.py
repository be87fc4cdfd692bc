"""The cyclic GC's pauses in ranked search, with the caches a search fills, next to the same searches with no
caches, in the same run:

    python -m services.bench.gc_pauses [--searches 2000] [--baseline-code PATH]

Why: a ranked search fills two least-recently-used caches that turn over with the catalog's long tail (the
engine's parsed items, the ranking features' analysed texts). In CPython (3.11) each entry evicted frees old
objects, which counts against the young generation's allocations, so a young collection comes late and walks
every entry added since: 100–180 ms, one search in several hundred, at 100k items. Latency percentiles over a
few hundred requests hide that; this benchmark times each collection.

Each configuration runs in a fresh process (`--child`) over the query benchmark's 100k-item embedded index
(built by `services.bench.query`, or here when missing), with the services the API builds (LambdaRank scorer,
rules) and the API's GC thresholds: the same warm-up and the same searches, one after another in one thread.
The process's start-up state is frozen as the engine freezes it on load, so what is timed is what a search
leaves behind. `--baseline-code PATH` also runs the shipped configuration on another checkout's code (this
script's file, that checkout's `services`): before against after, in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.bench.common import (
    CACHE_ROOT,
    REPO_ROOT,
    RESULTS,
    Latency,
    git_commit,
    machine_notes,
    markdown_table,
    proc_status_bytes,
    replace_section,
)

DOC = REPO_ROOT / "docs" / "benchmarks.md"
SECTION = "GC pauses in ranked search"
JSON_PATH = RESULTS / "bench_gc_pauses.json"
PLOT_PATH = RESULTS / "bench_gc_pauses.png"

# name -> (label, ApiSettings overrides)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "shipped": ("caches as shipped", {}),
    "no_caches": ("no caches (parsed items 0, analysed texts 0)", {
        "embedded": {"parsed_items": 0},
        "ranking": {"feature_cache_items": 0},
    }),
}  # fmt: skip
GENERATIONS = ("young", "middle", "full")


# ---- the child: one configuration in a fresh process ----------------------------------------------------------


def child(args: argparse.Namespace) -> dict[str, Any]:
    from services.api.app import GC_THRESHOLDS
    from services.api.settings import ApiSettings
    from services.bench.query import search_queries
    from services.core.embedding import build_embedder
    from services.core.engines import build_engine
    from services.core.engines.pinned import PinnedEngine
    from services.core.settings import EmbeddingSettings
    from services.datasets.films import load_films
    from services.ranking.service import build_ranking_service
    from services.rules.service import build_rules
    from services.search.service import build_search_services
    from services.search.types import SearchQuery

    overrides = CONFIGS[args.child][1]
    settings = ApiSettings(engine="embedded", data_dir=Path(args.data_dir), index_alias="bench", **overrides)
    engine = build_engine(settings)
    live = engine.live_version("bench")
    if live is None:
        raise SystemExit(f"no index at {args.data_dir}")
    embedder = build_embedder(EmbeddingSettings())
    ranking = build_ranking_service(
        settings, settings.ranking, lambda ids: engine.get_vectors("bench", ids, version=live.version)
    )
    _, reranker = build_rules(settings, settings.rules, engine)
    services = build_search_services(
        settings,
        settings.search,
        PinnedEngine(engine, "bench", live.version),
        embedder,
        scorer=ranking.scorer,
        reranker=reranker,
    )
    films = load_films(20_000)
    queries = search_queries(films, np.random.default_rng(args.seed), args.warmup + args.searches)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()  # the start-up state, as the API's engine freezes its index on load

    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append((time.perf_counter() - started[0]) * 1000)

    latencies: list[float] = []
    depth = settings.search.candidate_depth
    for i, q in enumerate(queries):
        if i == args.warmup:
            gc.callbacks.append(timer)
        start = time.perf_counter()
        services.pipeline.run(SearchQuery(q, None, depth=depth), page=1, size=10)
        if i >= args.warmup:
            latencies.append((time.perf_counter() - start) * 1000)
        if (i + 1) % 250 == 0:
            print(f"  [{args.child}] {i + 1}/{len(queries)} searches", file=sys.stderr, flush=True)
    gc.callbacks.remove(timer)
    services.close()
    engine.close()
    return {
        "latencies_ms": latencies,
        "pauses_ms": {GENERATIONS[g]: p for g, p in pauses.items()},
        "peak_rss": proc_status_bytes(os.getpid(), "VmHWM"),
    }


# ---- the parent: every configuration, the report ----------------------------------------------------------------


def ensure_index(data_dir: Path, items: int) -> None:
    """The query benchmark's index, built by its own code when missing (minutes: embeds the catalog once)."""
    from services.api.settings import ApiSettings
    from services.bench import query
    from services.core.embedding import build_embedder
    from services.core.settings import EmbeddingSettings
    from services.datasets.films import load_films

    if (data_dir / "bench-index.json").exists():
        return
    qargs = query.parse_args(["--items", str(items), "--data-dir", str(data_dir.parent)])
    films = load_films(20_000)[: qargs.items]
    embedder = build_embedder(EmbeddingSettings())
    vectors = query.film_vectors(films, embedder, data_dir.parent)
    settings = ApiSettings(engine="embedded", data_dir=data_dir, index_alias="bench")
    built = query.build_index(settings, films, vectors, embedder.model_id, qargs, reuse=True)
    built.engine.close()


def run_child(config: str, code: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        config,
        "--data-dir",
        str(args.data_dir),
        "--searches",
        str(args.searches),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
    ]
    env = {**os.environ, "PYTHONPATH": str(code)}  # a benchmark's own child process, not a setting
    print(f"{config} on {code} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, check=True, text=True)
    return dict(json.loads(done.stdout))


def summary(raw: dict[str, Any], label: str, code: str) -> dict[str, Any]:
    lat = np.asarray(raw["latencies_ms"])
    pauses = {g: np.asarray(raw["pauses_ms"][g]) for g in GENERATIONS}
    return {
        "label": label,
        "code": code,
        **Latency.of(list(lat)).to_json(),
        "p999": round(float(np.percentile(lat, 99.9)), 2),
        "gc": {
            g: {
                "count": int(p.size),
                "total_ms": round(float(p.sum()), 1),
                "max_ms": round(float(p.max()), 1) if p.size else 0.0,
                "over_20ms": int((p > 20).sum()),
            }
            for g, p in pauses.items()
        },
        "gc_ms_per_search": round(float(sum(p.sum() for p in pauses.values())) / lat.size, 3),
        "peak_rss_bytes": raw["peak_rss"],
        "latencies_ms": [round(x, 3) for x in raw["latencies_ms"]],
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("configuration", "code", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "young GCs: n / max ms",
              "middle: n / max", "full: n / max", "GC ms per search", "GC pauses > 20 ms", "peak RSS")  # fmt: skip
    body = []
    for r in rows:
        g = r["gc"]
        per_generation = [f"{g[name]['count']} / {g[name]['max_ms']:.1f}" for name in GENERATIONS]
        latency = [f"{r[key]:.1f}" for key in ("p50", "p99", "p999", "max")]
        rss = f"{(r['peak_rss_bytes'] or 0) / 2**30:.2f} GiB"
        over = str(sum(v["over_20ms"] for v in g.values()))
        body.append([r["label"], r["code"], *latency, *per_generation, f"{r['gc_ms_per_search']:.2f}", over, rss])
    return markdown_table(header, body, align_right_from=2)


def write_plot(rows: Sequence[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tail, over_time) = plt.subplots(1, 2, figsize=(13, 4.5))
    for r in rows:
        lat = np.sort(np.asarray(r["latencies_ms"]))
        pct = 100 * (np.arange(lat.size) + 1) / lat.size
        keep = pct >= 90
        name = f"{r['label']} ({r['code']})"
        tail.plot(pct[keep], lat[keep], label=name)
        over_time.plot(np.asarray(r["latencies_ms"]), lw=0.6, alpha=0.8, label=name)
    tail.set_xlabel("percentile")
    tail.set_ylabel("search latency (ms)")
    tail.set_title("the slowest 10% of searches", fontsize=10)
    over_time.set_xlabel("search, in order")
    over_time.set_ylabel("latency (ms)")
    over_time.set_title("every search: a young collection that came late is a spike", fontsize=10)
    for ax in (tail, over_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("ranked search in process, 100k items: GC pauses with and without the caches a search fills")
    fig.tight_layout()
    PLOT_PATH.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT_PATH, dpi=110)
    plt.close(fig)
    return PLOT_PATH


def markdown(report: dict[str, Any]) -> str:
    return "\n".join([
        "Ranked search (hybrid retrieval, the LambdaRank scorer, the rules) called in process over the query "
        "benchmark's 100k-item embedded index, one search after another, with the API's GC thresholds; every "
        "collection of the cyclic GC is timed (`gc.callbacks`). The caches a search fills are the engine's parsed "
        "items and the ranking features' analysed texts; the baseline turns both off in the same run. A young "
        "collection that comes late walks every entry added since the last one.",
        "",
        f"Command: `{report['command']}` at {report['commit']} on {report['when']} "
        f"({report['searches']} searches after {report['warmup']} warm-up ones, per configuration, each in a "
        f"fresh process; JSON in `docs/results/{JSON_PATH.name}`, plot `docs/results/{PLOT_PATH.name}`).",
        "",
        table(report["rows"]),
        "",
        f"![GC pauses](results/{PLOT_PATH.name})",
    ])  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=2000, help="measured searches per configuration (2000)")
    parser.add_argument("--warmup", type=int, default=50, help="searches before the clock starts (50)")
    parser.add_argument("--items", type=int, default=100_000, help="index size (default 100000)")
    parser.add_argument("--data-dir", help=f"the embedded index (default {CACHE_ROOT}/query-embedded-<items>)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--baseline-code", help="another checkout whose `services` runs the shipped configuration too")
    parser.add_argument("--no-write", action="store_true", help="print only: leave docs/ as it is")
    parser.add_argument("--child", choices=tuple(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.data_dir = Path(args.data_dir) if args.data_dir else CACHE_ROOT / f"query-embedded-{args.items}"
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        json.dump(child(args), sys.stdout)
        return
    ensure_index(args.data_dir, args.items)
    runs: list[tuple[str, Path, str]] = [(name, REPO_ROOT, git_commit()) for name in CONFIGS]
    if args.baseline_code:
        base = Path(args.baseline_code).resolve()
        rev = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        runs.insert(0, ("shipped", base, rev.stdout.strip() or str(base)))
    rows = [summary(run_child(name, code, args), CONFIGS[name][0], rev) for name, code, rev in runs]
    report = {
        "command": " ".join(["python -m services.bench.gc_pauses", *sys.argv[1:]]),
        "commit": git_commit(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "searches": args.searches,
        "warmup": args.warmup,
        "machine": machine_notes(),
        "rows": rows,
    }
    print(table(rows))
    if args.no_write:
        return
    JSON_PATH.parent.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(report, indent=1))
    write_plot(rows)
    replace_section(DOC, SECTION, markdown(report))
    print(f"written {JSON_PATH}, {PLOT_PATH} and the section {SECTION!r} of {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()

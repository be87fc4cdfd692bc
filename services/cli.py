"""The `trawl` command line: one entry point over the same services the API and the worker use."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from services.core.errors import TrawlError

if TYPE_CHECKING:
    from indexer.runtime import IndexerRuntime

app = typer.Typer(
    help="trawl: hybrid search and recommendations. Every command reads TRAWL_* settings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="The dead-letter store: events that failed after their retries.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
rules_app = typer.Typer(
    help="Business rules (pin, hide, boost, bury, diversity...) through the API.", no_args_is_help=True
)
app.add_typer(rules_app, name="rules")
recs_app = typer.Typer(help="Recommendations: the artefacts the API serves them from.", no_args_is_help=True)
app.add_typer(recs_app, name="recs")
console = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ApiOption = Annotated[str, typer.Option("--api", help="The API's base URL.")]
AdminKeyOption = Annotated[str | None, typer.Option("--admin-key", envvar="TRAWL_ADMIN_KEY", help="X-Admin-Key.")]


@app.callback()
def _setup() -> None:
    # opensearch-py logs every request at INFO; a worker's log should show our events, not the transport.
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _line_order(problem: dict[str, Any]) -> tuple[int, int, str]:
    """Problems of `trawl ingest` in line order ("items.jsonl:12"); the dead events (by item id) after them."""
    name, _, line = str(problem.get("where", "")).rpartition(":")
    return (0, int(line), name) if line.isdigit() else (1, 0, str(problem.get("where")))


# `trawl ingest` says so when no worker has touched an event after this long (it waits for --timeout in all)
NO_WORKER_HINT_S = 15.0


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: TRAWL_HOST, else 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: TRAWL_PORT, else 8000).")] = None,
) -> None:
    """Run the HTTP API (search, suggest, similar, recommendations, events, admin)."""
    import uvicorn

    from services.api.app import create_app
    from services.api.server import uvicorn_config
    from services.api.settings import ApiSettings

    settings = ApiSettings()  # TRAWL_HOST / TRAWL_PORT, else the defaults; an option wins over both
    given = {"host": host, "port": port}
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    server.run()
    if not server.started:  # as uvicorn.run: a failed startup (a port in use, the lifespan's error) exits non-zero
        raise typer.Exit(3)


@app.command()
def demo(
    limit: Annotated[
        int | None,
        typer.Option(help="Only N films, the most reviewed that MovieLens users rated first (default: all 17k)."),
    ] = None,
    port: int = 8000,
    stack: Annotated[
        bool, typer.Option(help="Use OpenSearch and Redis (started by infra/) instead of the embedded engine.")
    ] = False,
    serve: Annotated[bool, typer.Option(help="Start the API and the web page when the index is ready.")] = True,
) -> None:
    """The main job on one machine: ingest the film catalog through a worker, learn recommendations from MovieLens
    ratings joined onto it, then serve search, recommendations and the page."""
    from services.demo import Demo, DemoOptions

    Demo(DemoOptions(limit=limit, port=port, stack=stack, serve=serve)).run()


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes (the embedded broker uses 1).")] = 1,
    beat: Annotated[
        bool, typer.Option(help="Also run the periodic tasks in this worker: reconciler, recommendations refresh.")
    ] = True,
) -> None:
    """Run an ingestion worker (Celery): embeds content events and writes them to the engine."""
    from indexer.worker import app as celery_app
    from indexer.worker import settings

    queues = f"{settings.queues.queue},{settings.queues.control_queue}"
    pool = ["-P", "solo"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
    argv = ["worker", *pool, "-Q", queues, "--loglevel=INFO", *(["-B"] if beat else [])]
    celery_app.worker_main(argv)


@app.command()
def ingest(
    location: Annotated[str, typer.Argument(help="A .jsonl/.json/.csv file or an s3://bucket/prefix.")],
    wait: Annotated[bool, typer.Option(help="Wait until the worker has indexed every event.")] = True,
    inline: Annotated[bool, typer.Option(help="Process in this process instead of a worker.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the worker.")] = 3600,
    as_json: JsonFlag = False,
) -> None:
    """Bulk-ingest items: every line becomes an upsert event (or an event, if it has "op")."""
    from indexer.bulk import read_source
    from indexer.celery_app import create_celery
    from indexer.ledger import EventState
    from indexer.runtime import IndexerRuntime
    from indexer.service import IngestService
    from indexer.settings import IndexerSettings

    settings = IndexerSettings()
    runtime = IndexerRuntime(settings)
    service = IngestService(runtime.ledger, create_celery(settings))
    problems: list[dict[str, Any]] = []
    event_ids: list[str] = []
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("accepting", total=None, rate="")
        chunk: list[Any] = []
        where: list[str] = []

        def flush() -> None:
            report = service.accept(chunk, source=f"bulk:{location}")
            event_ids.extend(a.event_id for a in report.accepted)
            problems.extend(
                # the field within the line (`item.price`), not within the chunk of 1,000 sent (`events[2].item.price`)
                {"where": where[p.index], "field": re.sub(r"^events\[\d+\]\.?", "", p.field), "error": p.message}
                for p in report.rejected
            )
            progress.update(task, completed=len(event_ids))
            chunk.clear()
            where.clear()

        for line in read_source(location, settings.blobs):
            if line.event is None:
                problems.append({"where": line.where, "error": line.error})
                continue
            chunk.append(line.event)
            where.append(line.where)
            if len(chunk) == 1000:
                flush()
        if chunk:
            flush()
        progress.update(task, total=len(event_ids), description="accepted")
        if wait and event_ids:
            done_task = progress.add_task("indexing", total=len(event_ids), rate="")
            deadline = time.monotonic() + timeout
            t0 = time.monotonic()
            hinted = False
            while True:
                if inline:
                    runtime.drain(max_seconds=5)
                states = runtime.ledger.states_of(event_ids)
                done = sum(s not in (EventState.QUEUED, EventState.PROCESSING) for s in states.values())
                rate = done / max(time.monotonic() - t0, 1e-6)
                progress.update(done_task, completed=done, rate=f"{rate:,.0f} items/s")
                if done == len(event_ids):
                    break
                if not inline and not hinted and time.monotonic() - t0 > NO_WORKER_HINT_S and not done:
                    if not any(s is EventState.PROCESSING for s in states.values()):
                        progress.console.print(
                            f"[yellow]no event picked up in {NO_WORKER_HINT_S:.0f} s: is a worker running?[/yellow]"
                            f" (`trawl worker`, or stop and pass --inline; waiting up to {timeout:.0f} s)"
                        )
                    hinted = True
                if time.monotonic() > deadline:
                    _fail(
                        f"{len(event_ids) - done} events not indexed after {timeout:.0f} s; is a worker running?"
                        " (`trawl worker`, or pass --inline)",
                        3,
                    )
                time.sleep(0.5 if not inline else 0)
            dead = [e for e in runtime.ledger.dead(limit=100_000) if e.event_id in set(event_ids)]
            problems.extend({"where": e.item_id, "event_id": e.event_id, "error": e.error} for e in dead)
    problems.sort(key=_line_order)  # bad lines were found while reading, bad events at each chunk's send
    summary = {
        "accepted": len(event_ids),
        "failed": len(problems),
        "seconds": round(time.monotonic() - started, 1),
        "problems": problems[:50],
    }
    runtime.close()
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(
            f"[green]{summary['accepted']} accepted[/green], {summary['failed']} failed in {summary['seconds']} s"
        )
        for p in problems[:20]:
            console.print(f"  [yellow]{p.get('where')}[/yellow]: {p.get('field', '')} {p.get('error')}")
    if problems:
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(limit: int = 50, as_json: JsonFlag = False) -> None:
    """Dead-lettered events with their errors."""
    from indexer.runtime import ledger_for
    from indexer.settings import IndexerSettings

    dead = ledger_for(IndexerSettings()).dead(limit)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "event_id": e.event_id,
                        "item_id": e.item_id,
                        "op": e.op,
                        "version": e.version,
                        "attempts": e.attempts,
                        "error": e.error,
                    }
                    for e in dead
                ]
            )
        )
        return
    table = Table()
    # ids whole (`trawl dlq replay` takes them); the error folds instead
    table.add_column("event", no_wrap=True, min_width=max((len(e.event_id) for e in dead), default=5))
    table.add_column("item", overflow="fold")
    table.add_column("op")
    table.add_column("attempts")
    table.add_column("error", overflow="fold")
    for e in dead:
        table.add_row(e.event_id, e.item_id, e.op, str(e.attempts), e.error or "")
    Console().print(table)


@dlq_app.command("replay")
def dlq_replay(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Events to replay; none with --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead event.")] = False,
) -> None:
    """Put dead events back in the queue (after fixing their cause)."""
    from indexer.celery_app import create_celery
    from indexer.runtime import ledger_for
    from indexer.service import IngestService
    from indexer.settings import IndexerSettings

    if not event_ids and not all_:
        _fail("name the events to replay, or pass --all")
    settings = IndexerSettings()
    ledger = ledger_for(settings)
    count = ledger.replay(None if all_ else event_ids)
    IngestService(ledger, create_celery(settings)).wake()
    console.print(f"{count} events queued again")


@app.command()
def reindex(
    model: Annotated[str | None, typer.Option(help="Re-embed with this model (path or package:name).")] = None,
    attach: Annotated[str | None, typer.Option(help="Follow a running job instead of starting one.")] = None,
    inline: Annotated[bool, typer.Option(help="Run the job in this process instead of a worker.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Rebuild the index into a new version and swap the alias to it, with no downtime."""
    import threading

    from indexer.admin_store import JobConflictError
    from indexer.celery_app import REINDEX, create_celery
    from indexer.reindex import ReindexRunner
    from indexer.runtime import IndexerRuntime
    from indexer.settings import IndexerSettings

    settings = IndexerSettings()
    runtime = IndexerRuntime(settings)
    runner = ReindexRunner(runtime)
    if attach:
        job = runtime.admin.get(attach)
        if job is None:
            _fail(f"no job {attach}")
    else:
        try:
            job = runner.start(model)
        except JobConflictError as exc:
            _fail(f"{exc} (follow it with `trawl reindex --attach {exc.job_id}`)", 3)
        if inline:
            threading.Thread(target=runner.run, args=(job.job_id,), daemon=True).start()
        else:
            create_celery(settings).send_task(REINDEX, args=[job.job_id])
    assert job is not None
    _follow_job(runtime, job.job_id, as_json)


@app.command()
def rollback(as_json: JsonFlag = False) -> None:
    """Point the alias back at the previous index version (then repair it with changes since the swap)."""
    import threading

    from indexer.reindex import ReindexRunner
    from indexer.runtime import IndexerRuntime
    from indexer.settings import IndexerSettings

    runtime = IndexerRuntime(IndexerSettings())
    runner = ReindexRunner(runtime)
    job = runner.rollback()
    threading.Thread(target=runner.run, args=(job.job_id,), daemon=True).start()
    _follow_job(runtime, job.job_id, as_json)


def _follow_job(runtime: IndexerRuntime, job_id: str, as_json: bool) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("pending", total=None, note="")
        while True:
            job = runtime.admin.get(job_id)
            assert job is not None
            progress.update(
                bar,
                description=f"{job.kind} {job.job_id} {job.phase.value}",
                completed=job.done,
                total=job.total or None,
                note=job.message[:60],
            )
            if not job.active:
                break
            time.sleep(0.5)
    if as_json:
        print(
            json.dumps(
                {
                    "job_id": job.job_id,
                    "phase": job.phase.value,
                    "to_version": job.to_version,
                    "done": job.done,
                    "embedded": job.embedded,
                    "message": job.message,
                }
            )
        )
    else:
        console.print(f"{job.phase.value}: {job.message}")
    if job.phase.value != "done":
        raise typer.Exit(1)


@app.command()
def train(
    qrels: Annotated[Path | None, typer.Option(help="TREC-style judgments: query_id 0 item_id grade.")] = None,
    queries: Annotated[Path | None, typer.Option(help="Query texts: id<TAB>text or JSON lines.")] = None,
    interactions: Annotated[Path | None, typer.Option(help="JSON lines {query_id, item_id, type|label}.")] = None,
    folds: int = 5,
    make_current: Annotated[bool, typer.Option(help="Make the new model the one the API loads.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a LambdaRank model (k-fold cross-validated by query) and publish it to the model registry."""
    from services.api.settings import ApiSettings
    from services.ranking.train import train as train_model

    if qrels is None and interactions is None:
        _fail("give judgments (--qrels with --queries) or --interactions")
    trained = train_model(
        ApiSettings(), qrels=qrels, queries=queries, interactions=interactions, folds=folds, make_current=make_current
    )
    card = trained.card
    if as_json:
        print(card.model_dump_json())
    else:
        console.print(f"trained {card.model_id}: {json.dumps(card.metrics)[:300]}")


@rules_app.command("list")
def rules_list(api: ApiOption = "http://127.0.0.1:8000", admin_key: AdminKeyOption = None) -> None:
    """The business rules the API applies, as JSON."""
    print(json.dumps(_admin_call("GET", f"{api}/admin/rules", admin_key), indent=2))


@rules_app.command("add")
def rules_add(
    rule: Annotated[str, typer.Argument(help="The rule as JSON, or @file.json.")],
    api: ApiOption = "http://127.0.0.1:8000",
    admin_key: AdminKeyOption = None,
) -> None:
    """Create a rule (validated by the API; conflicts are reported, not merged)."""
    try:
        text = Path(rule[1:]).read_text() if rule.startswith("@") else rule
    except OSError as exc:
        _fail(f"cannot read {rule[1:]}: {exc.strerror}")
    try:
        body = json.loads(text)
    except ValueError as exc:
        _fail(f"the rule is not valid JSON ({exc}); pass the JSON itself or @file.json")
    print(json.dumps(_admin_call("POST", f"{api}/admin/rules", admin_key, body), indent=2))


@rules_app.command("remove")
def rules_remove(rule_id: str, api: ApiOption = "http://127.0.0.1:8000", admin_key: AdminKeyOption = None) -> None:
    """Delete a rule by id."""
    _admin_call("DELETE", f"{api}/admin/rules/{rule_id}", admin_key)
    console.print(f"rule {rule_id} removed")


def _admin_call(method: str, url: str, key: str | None, body: Any = None) -> Any:
    import httpx

    try:
        response = httpx.request(method, url, json=body, headers={"X-Admin-Key": key} if key else {}, timeout=30)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the API at {url}: {exc} (is `trawl serve` running?)")
    if response.status_code >= 400:
        _fail(f"{response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


@recs_app.command("refresh")
def recs_refresh(
    train_ranker: Annotated[bool, typer.Option(help="Retrain the ranker (else keep the live one).")] = True,
    if_changed: Annotated[bool, typer.Option(help="Skip when no interaction was recorded since the last run.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Rebuild the recommendation artefacts from the interactions and publish them: what the worker's periodic
    task does (every TRAWL_RECS__REFRESH_INTERVAL_S), once, in this process. The API picks them up by itself."""
    from indexer.runtime import IndexerRuntime
    from indexer.settings import IndexerSettings

    runtime = IndexerRuntime(IndexerSettings())
    try:
        report = runtime.refresh_recs(only_if_changed=if_changed, train_ranker=train_ranker)
    finally:
        runtime.close()
    if as_json:
        print(json.dumps(report.as_dict()))
    elif report.published:
        console.print(
            f"published {report.version}: {report.interactions} interactions, {report.items} items, "
            f"ranker {'trained' if report.ranker else 'none'}, {report.seconds} s"
        )
    else:
        console.print(f"nothing new since {report.version or 'the start'}: not rebuilt")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    which: Annotated[str, typer.Argument(help="ingest | reindex | query | events | recs | gc")],
) -> None:
    """Run a benchmark (figures next to a baseline from the same run; JSON under docs/results/)."""
    modules = {
        "ingest": "services.bench.ingest",
        "reindex": "services.bench.reindex",
        "query": "services.bench.query",
        "events": "services.bench.events",
        "recs": "services.bench.recs",
        "gc": "services.bench.gc_pauses",
    }
    if which not in modules:
        _fail(f"unknown benchmark {which!r}; choose one of {', '.join(modules)}")
    _run_module(modules[which], ctx.args)


@app.command(name="eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate(
    ctx: typer.Context,
    which: Annotated[
        str, typer.Argument(help="ranking (Cranfield) | films (the film catalog, derived judgments) | recs (MovieLens)")
    ],
) -> None:
    """Run an evaluation on real judgments, next to its baselines (JSON under docs/results/)."""
    modules = {
        "ranking": "services.ranking.evaluate",
        "films": "services.ranking.evaluate_films",
        "recs": "services.recs.evaluate",
    }
    if which not in modules:
        _fail(f"unknown evaluation {which!r}; choose one of {', '.join(modules)}")
    _run_module(modules[which], ctx.args)


def _run_module(module: str, args: list[str]) -> None:
    import runpy

    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Index versions behind the alias, and the ingestion ledger's counts."""
    from indexer.runtime import ledger_for
    from indexer.settings import IndexerSettings
    from services.core.engines import build_engine

    settings = IndexerSettings()
    engine = build_engine(settings)
    versions = engine.list_versions(settings.index_alias)
    counts = ledger_for(settings).counts()
    report = {
        "engine": settings.engine,
        "alias": settings.index_alias,
        "versions": [
            {"version": v.version, "live": v.live, "count": v.count, "model_id": v.model_id} for v in versions
        ],
        "events": counts,
    }
    engine.close()
    if as_json:
        print(json.dumps(report))
        return
    console.print(f"engine [bold]{settings.engine}[/bold], alias [bold]{settings.index_alias}[/bold]")
    for v in versions:
        console.print(f"  v{v.version}{' (live)' if v.live else ''}: {v.count} items, model {v.model_id}")
    console.print("events: " + ", ".join(f"{k} {n}" for k, n in counts.items()))


def main() -> None:
    try:
        app()
    except TrawlError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()

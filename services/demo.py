"""`trawl demo`: the platform's main job on one machine. Loads the film catalog, joins MovieLens 100k's ratings
onto it by title, ingests the films through a real worker, loads the ratings as interactions, trains the
recommendation ranker from them, starts the API and the web page, and prints three example requests. A second
run reuses the index, the interactions and the trained model."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from indexer.celery_app import create_celery
from indexer.ledger import EventState
from indexer.runtime import IndexerRuntime
from indexer.service import IngestService
from services.api.settings import ApiSettings
from services.core.domain import CatalogSchema, Item
from services.datasets.films import load_films
from services.datasets.movielens_join import USER_PREFIX, MovieLensJoin, join_movielens
from services.recs import Interaction, RecsRefreshJob
from services.recs.interactions import MAX_BATCH, all_interactions
from services.recs.movielens import DatasetMissingError

console = Console(stderr=True)
INFRA = Path(__file__).resolve().parents[1] / "infra"
JOIN_MARKER = "movielens-join.json"  # under the data dir: the joined ratings loaded, and those trained on
EXAMPLE_HISTORY = 20  # the example user is the one whose joined history is nearest this long: enough to go on


@dataclass(frozen=True)
class DemoOptions:
    limit: int | None = None
    port: int = 8000
    stack: bool = False
    serve: bool = True


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.child_env: dict[str, str] = {}
        if options.stack:
            self.child_env["TRAWL_ENGINE"] = "opensearch"
            if not ApiSettings().broker_url:  # the Redis infra/ starts, unless the settings name a broker
                self.child_env["TRAWL_BROKER_URL"] = "redis://127.0.0.1:6379/0"
        if not ApiSettings().catalog.attributes:  # the films' year, filterable: {"range": {"attributes.year": ...}}
            self.child_env["TRAWL_CATALOG__ATTRIBUTES"] = json.dumps({"year": "number"})
        self.settings = ApiSettings(**_overrides(self.child_env), port=options.port)
        self.worker: subprocess.Popen[bytes] | None = None
        self.example_user: str | None = None
        self.titles: dict[str, str] = {}
        self.rated: list[Interaction] = []

    def run(self) -> None:
        started = time.monotonic()
        # `kill`, `docker stop` and service managers send SIGTERM: stop like Ctrl-C, so the worker goes too.
        signal.signal(signal.SIGTERM, _interrupt)
        # Ctrl-C as well, even when started by a shell or job runner that ignores SIGINT (a non-interactive
        # shell's background jobs do, and Python then leaves it ignored): the demo would not stop, and its
        # worker, in a session of its own, would outlive whatever killed the demo.
        signal.signal(signal.SIGINT, _interrupt)
        if self.options.stack:
            console.print("[bold]starting OpenSearch and Redis[/bold] (infra/services-up.sh)")
            subprocess.run(["bash", str(INFRA / "services-up.sh")], check=True)
        catalog = load_films()
        join = self.join(catalog)
        films = choose_films(catalog, join, self.options.limit)
        console.print(f"[bold]catalog[/bold]: {len(films)} films from the bokeh-sampledata package (CC0)")
        self.start_worker()
        try:
            self.ingest(films)
            if join is not None:
                self.recommendations(join, films)
            console.print(f"ready in {time.monotonic() - started:.0f} s")
            if self.options.serve:
                self.serve()
        finally:
            self.stop_worker()

    def recommendations(self, join: MovieLensJoin, films: list[Item]) -> None:
        """The joined ratings of the ingested films into the interaction store, then the refresh job on them. The
        marker file says which joined ratings were loaded and trained on last, so a second run skips both."""
        ratings = join.restricted_to(f.id for f in films)
        marker_path = self.settings.data_dir / JOIN_MARKER
        marker = _read_marker(marker_path)
        digest = _digest(ratings)
        if marker.get("loaded") == digest:
            console.print(f"[green]reusing the interactions loaded before[/green]: {len(ratings):,} ratings")
        else:
            self.load_interactions(ratings)
            marker = {"loaded": digest}
            _write_marker(marker_path, marker)
        if self.train(retrain=marker.get("trained") != digest):
            _write_marker(marker_path, {**marker, "trained": digest})
        self.example_user = pick_user(ratings)
        self.titles = {f.id: f.title for f in films}
        self.rated = [i for i in ratings if i.user_id == self.example_user]

    def join(self, catalog: list[Item]) -> MovieLensJoin | None:
        try:
            join = join_movielens(catalog)
        except DatasetMissingError as exc:
            console.print(f"[yellow]no MovieLens ratings[/yellow] ({exc}): recommendations start cold")
            return None
        console.print(f"[bold]MovieLens 100k[/bold] joined by title and year: {join.report.summary()}")
        return join

    def start_worker(self) -> None:
        log = self.settings.data_dir / "worker.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "worker"],
                env={**os.environ, **self.child_env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        console.print(f"[bold]worker[/bold] started (pid {self.worker.pid}, log {log})")

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)

    def ingest(self, films: list[Any]) -> None:
        runtime = IndexerRuntime(self.settings)
        ledger = runtime.ledger
        live = runtime.engine.live_version(self.settings.index_alias)
        known = {s.item_id: s.hash for s in ledger.all_items()}
        todo = [f for f in films if known.get(f.id) != f.content_hash]
        if live is not None and not todo:
            console.print(f"[green]reusing the index built before[/green]: v{live.version}, {live.count} films")
            runtime.close()
            return
        service = IngestService(ledger, create_celery(self.settings))
        event_ids: list[str] = []
        for start in range(0, len(todo), 1000):
            report = service.accept(
                [{"op": "upsert", "item": f.to_json()} for f in todo[start : start + 1000]], source="demo"
            )
            event_ids += [a.event_id for a in report.accepted]
        columns = (
            TextColumn("indexing films"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        t0 = time.monotonic()
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("", total=len(event_ids), rate="")
            while True:
                states = ledger.states_of(event_ids)
                done = sum(s not in (EventState.QUEUED, EventState.PROCESSING) for s in states.values())
                progress.update(bar, completed=done, rate=f"{done / max(time.monotonic() - t0, 1e-6):,.0f} films/s")
                if done == len(event_ids):
                    break
                if self.worker is not None and self.worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {self.settings.data_dir / 'worker.log'}")
                time.sleep(0.5)
        dead = ledger.counts()[EventState.DEAD.value]
        console.print(f"indexed {len(event_ids)} films ({dead} failed) in {time.monotonic() - t0:.0f} s")
        runtime.close()

    def load_interactions(self, ratings: Sequence[Interaction]) -> int:
        """Record the joined ratings the store does not hold yet (an earlier run, or another slice, may have
        recorded some: never twice); returns how many were added. The store is the one POST
        /v1/events/interactions writes to and the refresh job reads: SQLite on the embedded default."""
        runtime = IndexerRuntime(self.settings)
        try:
            store = runtime.interactions
            held = Counter(_key(i) for i in all_interactions(store) if i.user_id.startswith(USER_PREFIX))
            todo: list[Interaction] = []
            for rating in ratings:
                if held[_key(rating)] > 0:
                    held[_key(rating)] -= 1
                else:
                    todo.append(rating)
            for start in range(0, len(todo), MAX_BATCH):
                store.record(todo[start : start + MAX_BATCH])
            console.print(
                f"interactions: {len(todo):,} MovieLens ratings recorded, users named {USER_PREFIX}<id> "
                f"({len(ratings) - len(todo):,} were there already; {store.count():,} in the store)"
            )
            return len(todo)
        finally:
            runtime.close()

    def train(self, *, retrain: bool) -> bool:
        """The recommendations refresh job (what the worker runs periodically): source models and the LambdaRank
        ranker from every interaction in the store. False when the models trained before were kept."""
        runtime = IndexerRuntime(self.settings)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        t0 = time.monotonic()
        try:
            current = runtime.recs_artefacts.current()
            if current is not None and not retrain:
                console.print(f"[green]reusing the recommendation models trained before[/green]: {current}")
                return False
            with Progress(*columns, console=console) as progress:
                bar = progress.add_task("training recommendations", total=None)

                def report(stage: str, done: int, total: int) -> None:
                    progress.update(bar, description=stage, completed=done, total=total)

                job = RecsRefreshJob(
                    runtime.interactions,
                    runtime.recs_artefacts,
                    self.settings.recs,
                    engine=runtime.engine,
                    alias=self.settings.index_alias,
                    progress=report,
                )
                built = job.run()
                progress.update(bar, description="recommendations trained", completed=1, total=1)
        finally:
            runtime.close()
        ranker = "LambdaRank ranker trained" if built.ranker is not None else "too little history for the ranker"
        console.print(
            f"recommendations: {ranker} on {built.info.get('ranker_groups', 0):,} lists from "
            f"{built.n_interactions:,} interactions, {len(built.items):,} items, in {time.monotonic() - t0:.0f} s"
        )
        return True

    def serve(self) -> None:
        import uvicorn

        from services.api.app import create_app
        from services.api.server import uvicorn_config

        server = uvicorn.Server(uvicorn_config(create_app(self.settings), self.settings, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://{self.settings.host}:{self.settings.port}"
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the API could not start on {base}")
            time.sleep(0.1)
        self.print_tour(base)
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            server.should_exit = True
            thread.join(10)

    def print_tour(self, base: str) -> None:
        hits = _get(f"{base}/v1/search?" + urllib.parse.urlencode({"q": "space adventure", "size": 3}))["items"]
        first = hits[0]["id"] if hits else "film-tt0076759"
        similar = _get(f"{base}/v1/items/{urllib.parse.quote(first)}/similar?size=3").get("items", [])
        body = {"user_id": self.example_user, "k": 5} if self.example_user else {"seed_item_ids": [first], "k": 5}
        recs = _post(f"{base}/v1/recommendations", body)
        liked = sorted(self.rated, key=lambda i: (-(i.value or 0), -i.epoch))[:3]
        history = (
            f"      ({self.example_user} rated {len(self.rated)} of these films, e.g. "
            + ", ".join(f"{self.titles.get(i.item_id, i.item_id)} {i.value:g}/5" for i in liked)
            + ")\n"
            if self.example_user
            else ""
        )
        answer = ", ".join(
            f"{(r.get('item') or {}).get('title', r['id'])} ({'+'.join(r['sources'])})" for r in recs.get("items", [])
        )
        console.print(f"\n[bold green]trawl is serving {base}[/bold green]")
        console.print(
            f"""  web page       {base}/
  admin page     {base}/admin.html
  API docs       {base}/docs

Try:
  curl '{base}/v1/search?q=space+adventure&size=3'
      -> {", ".join(h["item"]["title"] for h in hits)}
  curl '{base}/v1/items/{first}/similar?size=3'
      -> {", ".join(h["item"]["title"] for h in similar)}
  curl -X POST {base}/v1/recommendations -H 'content-type: application/json' -d '{json.dumps(body)}'
{history}      -> {answer}
         ({recs.get("mode", "?")} mode, ordered by {recs.get("ranker", "?")}; in brackets, the sources of each)
Ctrl-C stops the API and the worker; `trawl demo` again starts in seconds.""",
            markup=False,  # titles and answers are printed as they are, brackets included
            highlight=False,
            soft_wrap=True,  # each request on one line, to copy and paste
        )


def choose_films(catalog: list[Item], join: MovieLensJoin | None, limit: int | None) -> list[Item]:
    """The films to ingest: all of them, or a slice of `limit` whose most reviewed films MovieLens users rated
    come first, so that a small demo has ratings to learn recommendations from."""
    if limit is None:
        return catalog
    if join is None:
        return catalog[:limit]
    rated = set(join.matches.values())
    return ([f for f in catalog if f.id in rated] + [f for f in catalog if f.id not in rated])[:limit]


def pick_user(ratings: Sequence[Interaction]) -> str | None:
    """The example user: the one whose history here is nearest EXAMPLE_HISTORY ratings long (then the lowest
    MovieLens id), so that the answer has enough to go on and enough films left to recommend."""
    counts = Counter(i.user_id for i in ratings)
    if not counts:
        return None
    return min(counts, key=lambda u: (abs(counts[u] - EXAMPLE_HISTORY), int(u.removeprefix(USER_PREFIX))))


def _key(i: Interaction) -> tuple[str, str, str, float, float | None]:
    return (i.user_id, i.item_id, i.type.value, i.epoch, i.value)


def _digest(ratings: Sequence[Interaction]) -> str:
    h = hashlib.sha256()
    for i in ratings:
        h.update(repr(_key(i)).encode())
    return h.hexdigest()


def _read_marker(path: Path) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_marker(path: Path, marker: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker))
    tmp.replace(path)  # whole or not at all: a half-written marker would read as nothing loaded


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(json.load(response))
    except OSError:
        return {"items": []}


def _get(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return dict(json.load(response))
    except OSError:
        return {"items": []}


def _overrides(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "TRAWL_ENGINE" in env:
        out["engine"] = env["TRAWL_ENGINE"]
    if "TRAWL_BROKER_URL" in env:
        out["broker_url"] = env["TRAWL_BROKER_URL"]
    if "TRAWL_CATALOG__ATTRIBUTES" in env:
        out["catalog"] = CatalogSchema(attributes=json.loads(env["TRAWL_CATALOG__ATTRIBUTES"]))
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

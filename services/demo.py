"""`trawl demo`: the platform's main job on one machine. Loads the film catalog, ingests it through a real
worker, starts the API and the web page, and prints three example requests. A second run reuses the index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
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
from services.datasets.films import load_films

console = Console(stderr=True)
INFRA = Path(__file__).resolve().parents[1] / "infra"


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
            self.child_env |= {"TRAWL_ENGINE": "opensearch", "TRAWL_BROKER_URL": "redis://127.0.0.1:6379/0"}
        self.settings = ApiSettings(**_overrides(self.child_env), port=options.port)
        self.worker: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        started = time.monotonic()
        if self.options.stack:
            console.print("[bold]starting OpenSearch and Redis[/bold] (infra/services-up.sh)")
            subprocess.run(["bash", str(INFRA / "services-up.sh")], check=True)
        films = load_films(self.options.limit or 20_000)
        console.print(f"[bold]catalog[/bold]: {len(films)} films from the bokeh-sampledata package (CC0)")
        self.start_worker()
        try:
            self.ingest(films)
            console.print(f"ready in {time.monotonic() - started:.0f} s")
            if self.options.serve:
                self.serve()
        finally:
            self.stop_worker()

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

    def serve(self) -> None:
        import uvicorn

        from services.api.app import create_app

        server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.settings), host=self.settings.host, port=self.settings.port, log_level="warning"
            )
        )
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
        console.print(f"""
[bold green]trawl is serving {base}[/bold green]
  web page       {base}/
  admin page     {base}/admin.html
  API docs       {base}/docs

Try:
  curl '{base}/v1/search?q=space+adventure&size=5'
      -> {", ".join(h["item"]["title"] for h in hits)}
  curl '{base}/v1/items/{first}/similar?size=5'
      -> {", ".join(h["item"]["title"] for h in similar)}
  curl -X POST {base}/v1/recommendations -H 'content-type: application/json' -d '{{"seed_item_ids": ["{first}"]}}'
Ctrl-C stops the API and the worker; `trawl demo` again starts in seconds.""")


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
    return out

"""The periodic recommendations refresh: the typed job, the thin Celery task over it with its schedule and
policy, and `trawl recs refresh`. (tests/integration/test_recs_refresh.py runs it in a real worker.)"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import indexer.tasks
from indexer.celery_app import RECS_REFRESH, create_celery
from indexer.runtime import IndexerRuntime
from indexer.settings import IndexerSettings, QueueSettings
from indexer.tasks import register_tasks
from services.cli import app as cli
from services.core.errors import TransientEngineError
from services.recs.interactions import Interaction, InteractionType, SQLiteInteractionStore
from services.recs.models import ArtefactStore
from services.recs.settings import RankerSettings, RecsSettings
from services.recs.training import STORE_COUNT, RecsRefreshJob
from tests.unit.recs_world import at, world_interactions

pytestmark = pytest.mark.unit

FAST = RecsSettings(ranker=RankerSettings(n_estimators=10, cutoffs=2, min_child_samples=5))


def varied() -> list[Interaction]:
    """40 users, 7 clicks each among 12 items: enough overlap that each user's withheld items are known to
    the models, so that the ranker has examples to learn from."""
    rng = np.random.default_rng(5)
    return [
        Interaction(f"u{u}", f"i{item}", InteractionType.CLICK, at(u * 0.01) + timedelta(minutes=k))
        for u in range(40)
        for k, item in enumerate(rng.permutation(12)[:7])
    ]


def late_click(user: str = "late") -> Interaction:
    return Interaction(user, "a1", InteractionType.CLICK, at(40))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteInteractionStore]:
    s = SQLiteInteractionStore(tmp_path / "interactions.sqlite")
    yield s
    s.close()


def test_the_periodic_run_rebuilds_only_when_interactions_were_recorded_since(
    store: SQLiteInteractionStore, tmp_path: Path
) -> None:
    artefacts = ArtefactStore.local(tmp_path / "recs")
    job = RecsRefreshJob(store, artefacts, FAST)
    assert job.run_if_changed() is None and artefacts.current() is None  # nothing to learn from yet
    store.record(world_interactions())
    built = job.run_if_changed(train_ranker=False)
    assert built is not None and artefacts.current() is not None
    first = artefacts.current()
    assert (artefacts.load_info() or {})[STORE_COUNT] == len(world_interactions())
    assert job.run_if_changed() is None and artefacts.current() == first
    store.record([late_click()])
    again = job.run_if_changed(train_ranker=False)
    assert again is not None and artefacts.current() != first and "late" not in again.items.ids
    assert again.n_interactions == len(world_interactions()) + 1


def test_the_scheduled_task_publishes_what_the_store_holds_with_the_policy_from_settings(tmp_path: Path) -> None:
    # One app per process: Celery shares task callables by name between the apps of a process.
    settings = IndexerSettings(
        data_dir=tmp_path / "var",
        queues=QueueSettings(queue="q-ingest", control_queue="q-control"),
        recs=FAST.model_copy(update={"refresh_interval_s": 7.5, "refresh_time_limit_s": 900}),
    )
    app = create_celery(settings)
    entry = app.conf.beat_schedule["recs-refresh"]
    assert entry["task"] == RECS_REFRESH and entry["schedule"] == 7.5
    assert entry["options"]["expires"] == 7.5  # a busy worker never runs a pile of stale ticks
    assert app.conf.task_routes[RECS_REFRESH] == {"queue": "q-control"}
    register_tasks(app, settings)
    task = app.tasks[RECS_REFRESH]
    assert TransientEngineError in task.autoretry_for and task.max_retries >= 1
    assert task.acks_late is False
    assert (task.soft_time_limit, task.time_limit) == (900, 960)

    recorded = SQLiteInteractionStore(settings.recs.interactions_path(settings.data_dir))
    recorded.record(varied())
    recorded.close()
    try:
        report = task.apply().get()
        assert report["published"] and report["ranker"] and report["interactions"] == len(varied())
        live = ArtefactStore.local(settings.data_dir / "recs").load()
        assert live is not None and live.ranker is not None and "i1" in live.items.ids
        assert task.apply().get()["published"] is False  # nothing new
    finally:
        if indexer.tasks._runtime is not None:
            indexer.tasks._runtime.close()
        indexer.tasks._runtime = None


def test_the_cli_refreshes_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    store = SQLiteInteractionStore(data_dir / "interactions.sqlite")
    store.record([i for i in world_interactions() if i.timestamp < at(31)] + [late_click()])
    store.close()
    env = {"TRAWL_DATA_DIR": str(data_dir), "TRAWL_RECS__RANKER__N_ESTIMATORS": "10"}
    runner = CliRunner()
    first = runner.invoke(cli, ["recs", "refresh", "--no-train-ranker", "--json"], env=env)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["published"] and report["ranker"] is False and report["items"] > 0
    assert ArtefactStore.local(data_dir / "recs").current() == report["version"]
    skipped = runner.invoke(cli, ["recs", "refresh", "--if-changed", "--json"], env=env)
    assert skipped.exit_code == 0, skipped.output
    again = json.loads(skipped.stdout)
    assert again["published"] is False and again["version"] == report["version"]


def test_published_artefacts_record_the_count_they_were_built_from(
    store: SQLiteInteractionStore, tmp_path: Path
) -> None:
    store.record(world_interactions()[:50])
    artefacts = ArtefactStore.local(tmp_path / "recs")
    RecsRefreshJob(store, artefacts, FAST).run(train_ranker=False, since=at(0) + timedelta(days=1))
    assert STORE_COUNT not in (artefacts.load_info() or {})  # a partial rebuild says nothing about the store


def test_overlapping_ticks_run_one_refresh_and_the_others_skip(tmp_path: Path) -> None:
    settings = IndexerSettings(data_dir=tmp_path / "var", recs=FAST)
    recorded = SQLiteInteractionStore(settings.recs.interactions_path(settings.data_dir))
    recorded.record(varied())
    recorded.close()
    runtime = IndexerRuntime(settings)
    folder = settings.recs.artefacts_path(settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(folder / "refresh.lock", "w") as held:  # another worker's refresh, running
            fcntl.flock(held, fcntl.LOCK_EX)
            skipped = runtime.refresh_recs(only_if_changed=False, train_ranker=False)
        assert not skipped.published and ArtefactStore.local(folder).current() is None
        ran = runtime.refresh_recs(only_if_changed=False, train_ranker=False)
        assert ran.published and ArtefactStore.local(folder).current() is not None
    finally:
        runtime.close()

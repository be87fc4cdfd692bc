"""Thin Celery tasks over the indexer runtime. The runtime (model, engine client) is built once per process."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

from indexer.celery_app import DRAIN, RECONCILE
from indexer.runtime import IndexerRuntime
from indexer.settings import IndexerSettings

log = logging.getLogger(__name__)
_runtime: IndexerRuntime | None = None


def runtime(settings: IndexerSettings) -> IndexerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = IndexerRuntime(settings)
    return _runtime


def register_tasks(app: Celery, settings: IndexerSettings) -> None:
    @worker_process_init.connect(weak=False)
    def _warm_up(**_: Any) -> None:
        runtime(settings).pipeline  # noqa: B018 - load the model and connect at start, not on the first event

    @worker_ready.connect(weak=False)
    def _warm_up_in_process(sender: Any = None, **_: Any) -> None:
        pool = type(getattr(sender, "pool", None)).__name__.lower()
        if "solo" in pool or "thread" in pool:  # no child processes: the worker itself does the work
            runtime(settings).pipeline  # noqa: B018

    @worker_process_shutdown.connect(weak=False)
    def _shut_down(**_: Any) -> None:
        if _runtime is not None:
            _runtime.close()

    @app.task(name=DRAIN)
    def drain() -> dict[str, Any]:
        # Work for half the time limit, then hand over to a fresh task, so that no task is killed mid-batch.
        rt = runtime(settings)
        report = rt.drain(max_seconds=settings.queues.soft_time_limit_s / 2)
        if not report.transient_error and rt.ledger.ready_count():
            app.send_task(DRAIN)
        return report.__dict__

    @app.task(name=RECONCILE)
    def reconcile() -> dict[str, int]:
        """Re-drive what is not done: expired leases go back to the queue; ready events wake a worker."""
        ledger = runtime(settings).ledger
        expired = ledger.expire_leases()
        ready = ledger.ready_count()
        if ready:
            app.send_task(DRAIN)
        if expired:
            log.warning("re-driving %d events whose worker vanished", expired)
        return {"expired": expired, "ready": ready}

"""Thin Celery tasks over the indexer runtime. The runtime (model, engine client) is built once per process."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

from indexer.celery_app import DRAIN, RECONCILE, RECS_REFRESH, RECS_REFRESH_POLICY, REINDEX, recs_refresh_limits
from indexer.runtime import IndexerRuntime
from indexer.settings import IndexerSettings

log = logging.getLogger(__name__)
_runtime: IndexerRuntime | None = None
JOB_STALE_S = 90.0


def runtime(settings: IndexerSettings) -> IndexerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = IndexerRuntime(settings)
    return _runtime


def _start(settings: IndexerSettings) -> None:
    """Load the model and connect at start, not on the first event; a dependency that is down can wait."""
    rt = runtime(settings)
    rt.embedder  # noqa: B018
    try:
        rt.pipeline  # noqa: B018
    except Exception as exc:  # the first drain retries; the worker must come up regardless
        log.warning("engine not ready at start (%s); indexing starts when it answers", exc)
        rt.__dict__.pop("engine", None)


def register_tasks(app: Celery, settings: IndexerSettings) -> None:
    @worker_process_init.connect(weak=False)
    def _warm_up(**_: Any) -> None:
        _start(settings)

    @worker_ready.connect(weak=False)
    def _warm_up_in_process(sender: Any = None, **_: Any) -> None:
        pool = type(getattr(sender, "pool", None)).__name__.lower()
        if "solo" in pool or "thread" in pool:  # no child processes: the worker itself does the work
            _start(settings)

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

    @app.task(name=REINDEX, soft_time_limit=7 * 24 * 3600, time_limit=7 * 24 * 3600 + 60)
    def reindex(job_id: str) -> dict[str, Any]:
        from indexer.reindex import ReindexRunner  # the runner is needed by this task only

        job = ReindexRunner(runtime(settings)).run(job_id)
        return {"job_id": job.job_id, "phase": job.phase.value, "message": job.message}

    @app.task(name=RECS_REFRESH, **RECS_REFRESH_POLICY, **recs_refresh_limits(settings))
    def recs_refresh() -> dict[str, Any]:
        """Rebuild and publish the recommendation artefacts when interactions were recorded since the last run."""
        return runtime(settings).refresh_recs(only_if_changed=True).as_dict()

    @app.task(name=RECONCILE)
    def reconcile() -> dict[str, int]:
        """Re-drive what is not done: expired leases go back to the queue; ready events wake a worker."""
        rt = runtime(settings)
        ledger = rt.ledger
        for job in rt.admin.stale_jobs(older_than_s=JOB_STALE_S):
            log.warning("resuming reindex job %s (phase %s): its worker stopped", job.job_id, job.phase)
            rt.admin.update(job.job_id)  # heartbeat now, so that it is resumed once
            app.send_task(REINDEX, args=[job.job_id])
        expired = ledger.expire_leases()
        ready = ledger.ready_count()
        if ready:
            app.send_task(DRAIN)
        if expired:
            log.warning("re-driving %d events whose worker vanished", expired)
        return {"expired": expired, "ready": ready}

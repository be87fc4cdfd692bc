"""The Celery application: broker, queues and the delivery and retry policy, all in one place.

Delivery guarantees do not rest on Celery: acks_late alone loses the in-flight task when a worker is
killed (measured on both brokers). Tasks here only say "there is work"; the ledger holds the work.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from indexer.settings import IndexerSettings
from services.core.errors import TransientEngineError

DRAIN = "trawl.ingest.drain"
RECONCILE = "trawl.ingest.reconcile"
REINDEX = "trawl.admin.reindex"
RECS_REFRESH = "trawl.recs.refresh"

# The recommendations refresh rebuilds everything from the interactions each time, so a lost or repeated run
# costs time, never correctness. A store or engine that is down is retried with backoff a few times; after
# that, the next periodic tick tries again.
RECS_REFRESH_POLICY: dict[str, Any] = {
    "autoretry_for": (TransientEngineError, ConnectionError),
    "retry_backoff": 10,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 3,
    # Acknowledged on receipt: a refresh can outlast Redis's visibility timeout, after which a late ack would
    # have the broker hand the same refresh to a second worker while the first still runs.
    "acks_late": False,
}


def recs_refresh_limits(settings: IndexerSettings) -> dict[str, int]:
    """The refresh trains a model: it gets its own time limits, not the ingestion batch's."""
    limit = settings.recs.refresh_time_limit_s
    return {"soft_time_limit": limit, "time_limit": limit + 60}


def create_celery(settings: IndexerSettings) -> Celery:
    app = Celery("trawl", broker=settings.resolved_broker_url())
    q = settings.queues
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=q.prefetch,
        task_default_queue=q.queue,
        task_routes={
            DRAIN: {"queue": q.queue},
            RECONCILE: {"queue": q.control_queue},
            REINDEX: {"queue": q.control_queue},
            RECS_REFRESH: {"queue": q.control_queue},
        },
        task_soft_time_limit=q.soft_time_limit_s,
        task_time_limit=q.time_limit_s,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": max(60, int(settings.pipeline.lease_s))}
        if settings.resolved_broker_url().startswith("redis")
        else {},
        beat_schedule={
            # A busy worker must not find a pile of stale reconcile ticks: each expires before the next.
            "reconcile": {
                "task": RECONCILE,
                "schedule": settings.pipeline.reconcile_every_s,
                "options": {"expires": settings.pipeline.reconcile_every_s},
            },
            # Runs in every `trawl worker` (it starts beat by default), on Redis and on the embedded broker.
            "recs-refresh": {
                "task": RECS_REFRESH,
                "schedule": settings.recs.refresh_interval_s,
                "options": {"expires": settings.recs.refresh_interval_s},
            },
        },
        worker_hijack_root_logger=False,
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app

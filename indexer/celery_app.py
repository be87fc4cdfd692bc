"""The Celery application: broker, queues and the delivery and retry policy, all in one place.

Delivery guarantees do not rest on Celery: acks_late alone loses the in-flight task when a worker is
killed (measured on both brokers). Tasks here only say "there is work"; the ledger holds the work.
"""

from __future__ import annotations

from celery import Celery

from indexer.settings import IndexerSettings

DRAIN = "trawl.ingest.drain"
RECONCILE = "trawl.ingest.reconcile"
REINDEX = "trawl.admin.reindex"


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
            }
        },
        worker_hijack_root_logger=False,
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app

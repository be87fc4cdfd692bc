"""Entry point for `celery -A indexer.worker worker` (and `trawl worker`): the app with its tasks."""

from __future__ import annotations

from indexer.celery_app import create_celery
from indexer.settings import IndexerSettings
from indexer.tasks import register_tasks

settings = IndexerSettings()
app = create_celery(settings)
register_tasks(app, settings)

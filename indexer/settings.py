"""Settings of the indexer deployable (worker, reconciler, ingestion CLI); the API reads them to enqueue."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.core.settings import CoreSettings
from services.recs.settings import RecsSettings


class QueueSettings(BaseModel):
    """Celery delivery policy, in one place."""

    queue: str = "ingest"
    control_queue: str = "ingest-control"
    prefetch: int = 1
    # A batch that takes longer than this is killed; its events are re-driven by the reconciler.
    soft_time_limit_s: int = 300
    time_limit_s: int = 330


class PipelineSettings(BaseModel):
    batch_size: int = 128
    # How long a worker waits for more events to fill a batch before it embeds what it has.
    batch_max_wait_ms: int = 200
    # Which item fields make up the text that is embedded, in order.
    embed_fields: list[str] = Field(default_factory=lambda: ["title", "categories", "tags", "brand", "body"])
    embed_max_chars: int = 1200  # the model reads 256 word pieces; the rest is cut anyway
    # Failures that are not transient: this many attempts, then the dead-letter store.
    max_attempts: int = 3
    # Transient failures (engine or store down): back off up to this long; they never dead-letter.
    max_backoff_s: float = 30.0
    # A claimed event whose worker vanished is re-driven after this lease.
    lease_s: float = 120.0
    reconcile_every_s: float = 5.0


class IndexerSettings(CoreSettings):
    # Empty: Redis on the stack must be given; the embedded default uses SQLite through kombu, no server.
    broker_url: str = ""
    queues: QueueSettings = Field(default_factory=QueueSettings)
    # Index versions kept after a reindex: the live one and this many minus one for rollback.
    reindex_keep_versions: int = 2
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    # Recommendations: the worker runs their periodic refresh; the API serves them (it extends these settings).
    recs: RecsSettings = Field(default_factory=RecsSettings)

    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

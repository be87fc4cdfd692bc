"""Builds the indexer's long-lived objects once per process, and the loops the Celery tasks call."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property

from indexer.ledger import EventLedger
from indexer.pipeline import BatchReport, IngestPipeline
from indexer.settings import IndexerSettings
from indexer.source_of_truth import SourceOfTruth
from services.core.embedding import Embedder, SentenceTransformerEmbedder
from services.core.engines import build_engine
from services.core.engines.base import IndexVersion, SearchEngine
from services.core.storage import S3BlobStore, build_blob_store

log = logging.getLogger(__name__)


def ensure_live_version(engine: SearchEngine, alias: str, embedder: Embedder) -> IndexVersion:
    """The alias's live version, created on first use with the embedder's dimension and model id."""
    live = engine.live_version(alias)
    if live is None:
        created = engine.create_version(alias, dimension=embedder.dimension, model_id=embedder.model_id)
        engine.point_alias(alias, created.version)
        live = engine.live_version(alias)
        assert live is not None
    elif live.model_id != embedder.model_id:
        log.warning(
            "alias %s holds vectors of %s but this worker embeds with %s",
            alias,
            live.model_id,
            embedder.model_id,
        )
    return live


def ledger_for(settings: IndexerSettings) -> EventLedger:
    return EventLedger(settings.data_dir / "ledger.sqlite")


@dataclass
class IndexerRuntime:
    settings: IndexerSettings

    @cached_property
    def ledger(self) -> EventLedger:
        return ledger_for(self.settings)

    @cached_property
    def engine(self) -> SearchEngine:
        return build_engine(self.settings)

    @cached_property
    def embedder(self) -> Embedder:
        return SentenceTransformerEmbedder(self.settings.embedding)

    @cached_property
    def source(self) -> SourceOfTruth:
        blobs = build_blob_store(self.settings)
        if isinstance(blobs, S3BlobStore):
            blobs.ensure_bucket()
        return SourceOfTruth(blobs)

    @cached_property
    def pipeline(self) -> IngestPipeline:
        ensure_live_version(self.engine, self.settings.index_alias, self.embedder)
        return IngestPipeline(self.settings, self.ledger, self.engine, self.embedder, self.source)

    def drain(self, max_seconds: float) -> BatchReport:
        """Claim and process batches until the queue is empty, a dependency is down, or time is up.

        A batch is formed across events: when fewer than `batch_size` are ready, wait up to
        `batch_max_wait_ms` for more before embedding what there is.
        """
        pipe = self.settings.pipeline
        total = BatchReport()
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            batch = self.ledger.claim(pipe.batch_size, pipe.lease_s)
            if not batch:
                break
            wait_until = time.monotonic() + pipe.batch_max_wait_ms / 1000
            while len(batch) < pipe.batch_size and time.monotonic() < wait_until:
                time.sleep(0.02)
                batch += self.ledger.claim(pipe.batch_size - len(batch), pipe.lease_s)
            report = self.pipeline.process(batch)
            total = total + report
            if report.transient_error:
                break  # indexing pauses; the reconciler re-drives once the backoff has passed
        return total

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
        if "ledger" in self.__dict__:
            self.ledger.close()

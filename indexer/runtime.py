"""Builds the indexer's long-lived objects once per process, and the loops the Celery tasks call."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property

from indexer.admin_store import AdminStore, admin_store_for
from indexer.ledger import EventLedger
from indexer.pipeline import BatchReport, IngestPipeline, Target, is_transient
from indexer.settings import IndexerSettings
from indexer.source_of_truth import SourceOfTruth
from services.core.embedding import Embedder, EmbedderPool, build_embedder
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
        return build_embedder(self.settings.embedding)

    @cached_property
    def source(self) -> SourceOfTruth:
        blobs = build_blob_store(self.settings)
        if isinstance(blobs, S3BlobStore):
            blobs.ensure_bucket()
        return SourceOfTruth(blobs)

    @cached_property
    def admin(self) -> AdminStore:
        return admin_store_for(self.settings.data_dir)

    @cached_property
    def embedders(self) -> EmbedderPool:
        return EmbedderPool(self.settings.embedding, self.admin.model_spec, preloaded=[self.embedder])

    @cached_property
    def pipeline(self) -> IngestPipeline:
        self.admin.remember_model(self.embedder.model_id, self.settings.embedding.model)
        ensure_live_version(self.engine, self.settings.index_alias, self.embedder)
        return IngestPipeline(self.settings, self.ledger, self.engine, self.embedder, self.source, self.targets)

    def targets(self) -> list[Target]:
        """The live version with the model its vectors come from, plus any version a reindex is building."""
        alias = self.settings.index_alias
        live = self.engine.live_version(alias)
        out = [Target(live.version, self.embedders.get(live.model_id))] if live else [Target(None, self.embedder)]
        for version, spec in self.admin.dual_write_versions(alias):
            if live is None or version != live.version:
                out.append(Target(version, self.embedders.for_spec(spec)))
        return out

    def drain(self, max_seconds: float) -> BatchReport:
        """Claim and process batches until the queue is empty, a dependency is down, or time is up.

        A batch is formed across events: when fewer than `batch_size` are ready, wait up to
        `batch_max_wait_ms` for more before embedding what there is.
        """
        pipe = self.settings.pipeline
        total = BatchReport()
        try:
            pipeline = self.pipeline  # before claiming: a pipeline that cannot start must not hold events
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("cannot start the pipeline yet: %s", exc)
            del self.__dict__["engine"]  # connect afresh next time
            return BatchReport(transient_error=str(exc))
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            batch = self.ledger.claim(pipe.batch_size, pipe.lease_s)
            if not batch:
                break
            wait_until = time.monotonic() + pipe.batch_max_wait_ms / 1000
            while len(batch) < pipe.batch_size and time.monotonic() < wait_until:
                time.sleep(0.02)
                batch += self.ledger.claim(pipe.batch_size - len(batch), pipe.lease_s)
            report = pipeline.process(batch)
            total = total + report
            if report.transient_error:
                break  # indexing pauses; the reconciler re-drives once the backoff has passed
        return total

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
        for name in ("ledger", "admin"):
            if name in self.__dict__:
                self.__dict__[name].close()

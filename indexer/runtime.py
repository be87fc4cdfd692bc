"""Builds the indexer's long-lived objects once per process, and the loops the Celery tasks call."""

from __future__ import annotations

import fcntl
import logging
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from indexer.admin_store import AdminStore, admin_store_for
from indexer.ledger import EventLedger
from indexer.pipeline import BatchReport, IngestPipeline, Target, is_transient
from indexer.settings import IndexerSettings
from indexer.source_of_truth import SourceOfTruth
from services.core.embedding import Embedder, EmbedderPool, build_embedder
from services.core.engines import build_engine
from services.core.engines.base import IndexVersion, SearchEngine
from services.core.storage import S3BlobStore, build_blob_store

if TYPE_CHECKING:
    from services.recs import ArtefactStore, InteractionStore, RecsRefreshJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecsRefreshReport:
    published: bool
    version: str | None = None  # the live artefacts after the run
    interactions: int = 0  # taste interactions the models were built from
    items: int = 0
    ranker: bool = False  # whether the published artefacts carry a trained ranker
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    @cached_property
    def interactions(self) -> InteractionStore:
        from services.recs import build_interaction_store  # the recommendation stack only where it is used

        return build_interaction_store(self.settings, self.settings.recs)

    @cached_property
    def recs_artefacts(self) -> ArtefactStore:
        from services.recs import build_artefact_store

        return build_artefact_store(self.settings, self.settings.recs, publisher=True)

    def recs_refresh_job(self) -> RecsRefreshJob:
        from services.recs import RecsRefreshJob

        alias = self.settings.index_alias
        # Without a live index there are no item vectors: the job trains on the interaction sources alone.
        engine = self.engine if self.engine.live_version(alias) is not None else None
        return RecsRefreshJob(self.interactions, self.recs_artefacts, self.settings.recs, engine=engine, alias=alias)

    def refresh_recs(self, *, only_if_changed: bool, train_ranker: bool = True) -> RecsRefreshReport:
        """The periodic refresh (the Celery task, the CLI): rebuild the artefacts and publish them.

        Every worker runs beat, so ticks can overlap; one refresh at a time per artefacts folder (which API and
        workers share), the others skip rather than do the same work twice."""
        started = time.monotonic()
        folder = self.settings.recs.artefacts_path(self.settings.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "refresh.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("a recommendations refresh is already running; this tick skips")
                return RecsRefreshReport(published=False, version=self.recs_artefacts.current())
            job = self.recs_refresh_job()
            run = job.run_if_changed if only_if_changed else job.run
            built = run(train_ranker=train_ranker)
        if built is None:
            return RecsRefreshReport(published=False, version=self.recs_artefacts.current())
        report = RecsRefreshReport(
            published=True,
            version=self.recs_artefacts.current(),
            interactions=built.n_interactions,
            items=len(built.items),
            ranker=built.ranker is not None,
            seconds=round(time.monotonic() - started, 2),
        )
        log.info("recommendation artefacts published: %s", report)
        return report

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
        for name in ("ledger", "admin", "interactions"):
            if name in self.__dict__:
                self.__dict__[name].close()

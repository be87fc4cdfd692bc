"""Reindexing with no downtime and no lost writes, and embedding-model migration.

Phases of a job (state in the admin store, so a job outlives the process that started it):
  creating  -> version N+1 is created with the current schema and the target model.
  backfill  -> from here every ingestion batch also writes to N+1 (dual write). Batches claimed before the
               switch are waited for; then N+1 is filled: a server-side copy when the model is unchanged
               (no vector is recomputed), or the source of truth re-embedded when the model changes.
  verify    -> every item's content hash in N+1 is checked against the source of truth (the ledger's item
               states); differences (an item changed while the copy ran) are repaired by "resync" events that
               go through the same per-item ordering as all writes. Repeated until N+1 matches.
  swapping  -> the alias moves to N+1 atomically; N stays for rollback; older versions are dropped.
A cancelled or failed job drops N+1 and leaves the alias where it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from indexer.admin_store import Job, Phase
from indexer.ledger import EventState, NewEvent
from indexer.runtime import IndexerRuntime
from indexer.source_of_truth import SourceOfTruth
from indexer.text import compose_text
from services.core.domain import Item
from services.core.engines.base import Document
from services.core.errors import TrawlError, ValidationError

log = logging.getLogger(__name__)
VERIFY_ROUNDS = 6


# How long a version the alias just left stays, when retention drops it at once (reindex_keep_versions=1).
SWAP_GRACE_S = 2.0


class JobCancelled(Exception):
    pass


@dataclass(frozen=True)
class Diff:
    missing: list[str]
    stale: list[str]
    extra: list[str]

    @property
    def ids(self) -> list[str]:
        return [*self.missing, *self.stale, *self.extra]


class ReindexRunner:
    def __init__(self, runtime: IndexerRuntime, wake: Callable[[], object] | None = None) -> None:
        self._rt = runtime
        self._alias = runtime.settings.index_alias
        self._wake = wake
        self._last_drain = 0.0

    # ---- starting and steering ----------------------------------------------------------------------

    def start(self, model_spec: str | None = None) -> Job:
        """Record a new job (JobConflictError if one runs for this alias); a worker or `run` executes it."""
        if self._rt.engine.live_version(self._alias) is None:
            raise ValidationError("alias", f"{self._alias!r} has no live version to reindex")
        return self._rt.admin.create_job(self._alias, "reindex", model_spec or self._current_spec())

    def _current_spec(self) -> str:
        live = self._rt.engine.live_version(self._alias)
        spec = self._rt.admin.model_spec(live.model_id) if live else None
        return spec or self._rt.settings.embedding.model

    def rollback(self) -> Job:
        """Point the alias back at the previous version, then repair it with what changed since the swap."""
        engine = self._rt.engine
        live = engine.live_version(self._alias)
        versions = {v.version: v for v in engine.list_versions(self._alias)}
        previous = self._previous_live(live.version) if live else None
        if live is not None and (previous is None or previous not in versions):
            # no record of what was live before (versions made before jobs recorded it): the one below
            previous = max((n for n in versions if n < live.version), default=None)
        if live is None or previous is None:
            raise ValidationError("alias", f"{self._alias!r} has no previous version to roll back to")
        target = versions[previous]
        job = self._rt.admin.create_job(self._alias, "rollback", self._rt.admin.model_spec(target.model_id) or "")
        engine.point_alias(self._alias, target.version)
        return self._rt.admin.update(
            job.job_id,
            phase=Phase.VERIFY,
            from_version=live.version,
            to_version=target.version,
            model_id=target.model_id,
            message=f"alias moved back to v{target.version}; repairing",
        )

    def _previous_live(self, live: int) -> int | None:
        """The version that was live before `live`: what the swap or the rollback that made it live moved the
        alias away from (a rollback moves the alias when it starts; a reindex when it is done)."""
        for job in self._rt.admin.jobs(self._alias, limit=100):  # newest first
            moved = (job.kind == "rollback" and job.phase is not Phase.PENDING) or job.phase is Phase.DONE
            if moved and job.to_version == live and job.from_version is not None and job.from_version != live:
                return job.from_version
        return None

    # ---- running --------------------------------------------------------------------------------------

    def run(self, job_id: str) -> Job:
        """Run (or resume) a job to its end; safe to call again after a crash: each phase is idempotent."""
        admin = self._rt.admin
        job = admin.get(job_id)
        if job is None:
            raise TrawlError(f"no reindex job {job_id}")
        try:
            while job.active:
                self._check_cancel(job)
                step = {
                    Phase.PENDING: self._create,
                    Phase.CREATING: self._create,
                    Phase.BACKFILL: self._backfill,
                    Phase.VERIFY: self._verify,
                    Phase.SWAPPING: self._swap,
                }[job.phase]
                job = step(job)
        except JobCancelled:
            job = self._abandon(job, Phase.CANCELLED, "cancelled; the alias was not moved")
        except Exception as exc:
            log.exception("reindex job %s failed", job_id)
            job = self._abandon(job, Phase.FAILED, f"{type(exc).__name__}: {exc}")
        return job

    def _check_cancel(self, job: Job) -> None:
        fresh = self._rt.admin.get(job.job_id)
        if fresh is not None and fresh.cancel and fresh.kind == "reindex" and fresh.phase != Phase.SWAPPING:
            raise JobCancelled()

    def _abandon(self, job: Job, phase: Phase, message: str) -> Job:
        fresh = self._rt.admin.get(job.job_id) or job
        live = self._rt.engine.live_version(self._alias)
        if fresh.kind == "reindex" and fresh.to_version and (live is None or live.version != fresh.to_version):
            try:
                self._rt.engine.drop_version(self._alias, fresh.to_version)
            except TrawlError as exc:
                log.warning("could not drop v%s: %s", fresh.to_version, exc)
        return self._rt.admin.update(job.job_id, phase=phase, message=message, errors=[*fresh.errors, message])

    def _create(self, job: Job) -> Job:
        live = self._rt.engine.live_version(self._alias)
        if live is None:
            raise ValidationError("alias", f"{self._alias!r} has no live version")
        target = self._rt.embedders.for_spec(job.model_spec)
        self._rt.admin.remember_model(target.model_id, job.model_spec)
        if job.to_version is None:
            # Same model and definition: the engine may clone the live version (before dual write begins, so
            # no write lands in a version that is then replaced); verify repairs what changed since the clone.
            created = None
            started = time.monotonic()
            if target.model_id == live.model_id:
                created = self._rt.engine.clone_version(self._alias, live.version)
            clone_s = time.monotonic() - started if created is not None else 0.0
            if created is None:
                created = self._rt.engine.create_version(
                    self._alias, dimension=target.dimension, model_id=target.model_id
                )
            job = self._rt.admin.update(
                job.job_id,
                phase=Phase.CREATING,
                to_version=created.version,
                from_version=live.version,
                model_id=target.model_id,
                total=self._rt.ledger.live_item_count(),
                backfill_s=clone_s,  # a clone fills the version as it creates it
            )
        # From this commit on, every ingestion batch that starts writes to both versions.
        return self._rt.admin.update(job.job_id, phase=Phase.BACKFILL, message="dual write on; filling")

    def _backfill(self, job: Job) -> Job:
        assert job.to_version is not None and job.from_version is not None
        source_v, target_v = job.from_version, job.to_version
        deadline = time.monotonic() + self._rt.settings.pipeline.lease_s
        while self._rt.ledger.in_flight_since_before(job.phase_at) and time.monotonic() < deadline:
            time.sleep(0.2)  # batches claimed before dual write began must finish (or their lease expire)
        live = self._rt.engine.live_version(self._alias)
        source_model = live.model_id if live else None
        started = time.monotonic()

        def progress(done: int, total: int) -> bool:
            self._rt.admin.update(job.job_id, done=done, total=max(total, done))
            self._check_cancel(job)
            self._drain_now_and_then()
            return True

        target = next(v for v in self._rt.engine.list_versions(self._alias) if v.version == job.to_version)
        if target.cloned_from == job.from_version:
            message = f"cloned v{job.from_version}: {target.count} items, no graph rebuilt, nothing embedded"
            job = self._rt.admin.update(job.job_id, done=target.count, total=target.count, message=message)
            return self._rt.admin.update(job.job_id, phase=Phase.VERIFY)
        if source_model == job.model_id:
            copied = self._rt.engine.copy_version(self._alias, source_v, target_v, progress=progress)
            message = f"copied {copied} items with their vectors in {time.monotonic() - started:.1f} s"
            job = self._rt.admin.update(job.job_id, done=copied, message=message)
        else:
            job = self._reembed(job, progress)
        self._rt.engine.refresh(self._alias, version=job.to_version)
        return self._rt.admin.update(job.job_id, phase=Phase.VERIFY, backfill_s=time.monotonic() - started)

    def _reembed(self, job: Job, progress: Callable[[int, int], bool]) -> Job:
        """A model change: every item of the source of truth is embedded once with the new model."""
        assert job.to_version is not None
        embedder = self._rt.embedders.for_spec(job.model_spec)
        pipe = self._rt.settings.pipeline
        total = self._rt.ledger.live_item_count()
        done = embedded = 0
        batch: list[Item] = []

        def flush() -> None:
            nonlocal done, embedded
            texts = [compose_text(it, pipe.embed_fields, pipe.embed_max_chars) for it in batch]
            docs = [Document(it, v) for it, v in zip(batch, embedder.embed(texts), strict=True)]
            result = self._rt.engine.upsert(self._alias, docs, version=job.to_version)
            if result.failed:
                raise TrawlError(f"{len(result.failed)} items failed in v{job.to_version}: {result.failed[0]}")
            done += len(docs)
            embedded += len(docs)
            self._rt.admin.update(job.job_id, embedded=embedded)
            progress(done, total)
            batch.clear()

        source: SourceOfTruth = self._rt.source
        for record in source.scan():
            if not record.deleted and record.item is not None:
                batch.append(Item.model_validate(record.item))
                if len(batch) >= 256:
                    flush()
        if batch:
            flush()
        return self._rt.admin.update(job.job_id, done=done, embedded=embedded, message=f"embedded {embedded} items")

    def _verify(self, job: Job) -> Job:
        assert job.to_version is not None
        for round_ in range(1, VERIFY_ROUNDS + 1):
            self._rt.engine.refresh(self._alias, version=job.to_version)
            diff = self.compare(job.to_version)
            expected = self._rt.ledger.live_item_count()
            count = self._rt.engine.count(self._alias, version=job.to_version)
            if not diff.ids and count == expected:
                message = f"verified: {count} items, every content hash matches the source of truth"
                next_phase = Phase.SWAPPING if job.kind == "reindex" else Phase.DONE
                return self._rt.admin.update(job.job_id, phase=next_phase, message=message)
            self._rt.admin.update(
                job.job_id,
                message=f"round {round_}: {len(diff.missing)} missing, {len(diff.stale)} stale, "
                f"{len(diff.extra)} extra; repairing",
            )
            self._resync(job, diff.ids)
        raise TrawlError(f"v{job.to_version} still differs from the source of truth after {VERIFY_ROUNDS} rounds")

    def compare(self, version: int) -> Diff:
        """Content hashes in `version` against the ledger's item states (which mirror the source of truth)."""
        held: dict[str, str] = {}
        for batch in self._rt.engine.scan(self._alias, version=version, batch_size=2000, with_vectors=False):
            held.update((d.item.id, d.content_hash) for d in batch)
        missing, stale, extra = [], [], []
        for state in self._rt.ledger.all_items():
            if state.deleted:
                if state.item_id in held:
                    extra.append(state.item_id)
            elif state.item_id not in held:
                missing.append(state.item_id)
            elif held[state.item_id] != state.hash:
                stale.append(state.item_id)
        known = {s.item_id for s in self._rt.ledger.all_items()}
        extra += [i for i in held if i not in known]
        return Diff(missing, stale, extra)

    def _resync(self, job: Job, ids: list[str]) -> None:
        recorded = self._rt.ledger.append([NewEvent(i, "resync", None, {}, f"reindex:{job.job_id}") for i in ids])
        if self._wake:
            self._wake()
        event_ids = [r.event_id for r in recorded]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            self._rt.drain(max_seconds=5)  # a single worker process must not wait on itself
            states = self._rt.ledger.states_of(event_ids)
            if all(s not in (EventState.QUEUED, EventState.PROCESSING) for s in states.values()):
                return
            self._rt.admin.update(job.job_id)  # heartbeat
            time.sleep(0.2)
        raise TrawlError("repair events were not processed in 10 minutes")

    def _swap(self, job: Job) -> Job:
        target = job.to_version
        assert target is not None
        before = self._rt.engine.live_version(self._alias)
        self._rt.engine.point_alias(self._alias, target)
        previous = before.version if before is not None and before.version != target else None
        # the job records what it moved the alias away from: retention and the next rollback go by it
        job = self._rt.admin.update(job.job_id, from_version=previous if previous is not None else job.from_version)
        dropped = self._apply_retention(target, previous)
        note = f"; dropped {', '.join(f'v{v}' for v in dropped)}" if dropped else ""
        return self._rt.admin.update(job.job_id, phase=Phase.DONE, message=f"alias now on v{target}{note}")

    def _apply_retention(self, live: int, previous: int | None) -> list[int]:
        """Keep `reindex_keep_versions`: the live one, the one live just before it (what a rollback goes back
        to), then the newest others. A version rolled away from is not kept for being new."""
        keep_n = self._rt.settings.reindex_keep_versions
        if keep_n <= 0:
            return []
        versions = self._rt.engine.list_versions(self._alias)
        keep = [live] + ([previous] if previous is not None else [])
        keep += sorted((v.version for v in versions if v.version not in keep), reverse=True)
        kept = set(keep[:keep_n])
        old = [v.version for v in versions if v.version not in kept and not v.live]
        if previous in old:
            # API processes see the alias move within a second (their alias check); a search still on the
            # version just replaced must not find it gone
            time.sleep(SWAP_GRACE_S)
        for v in old:
            self._rt.engine.drop_version(self._alias, v)
        return old

    def _drain_now_and_then(self) -> None:
        # Keeps ingestion moving (into both versions) when this process is the only worker.
        if time.monotonic() - self._last_drain > 2:
            self._rt.drain(max_seconds=1)
            self._last_drain = time.monotonic()

"""Admin: index versions, reindexing (with model migration), cancel and rollback. Jobs run in a worker."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from indexer.admin_store import AdminStore, Job, JobConflictError
from services.api.deps import AdminDep, EngineDep, SettingsDep
from services.core.embedding import model_missing
from services.core.errors import ValidationError

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])


class VersionOut(BaseModel):
    version: int
    name: str
    live: bool
    count: int
    model_id: str
    dimension: int
    created_at: str
    cloned_from: int | None = None


class JobOut(BaseModel):
    job_id: str
    alias: str
    kind: str
    phase: str
    model_id: str | None
    model_spec: str
    from_version: int | None
    to_version: int | None
    done: int
    total: int
    embedded: int
    rate_per_s: float | None
    eta_s: float | None
    message: str
    errors: list[str]
    cancel_requested: bool
    created_at: float
    updated_at: float


class IndicesOut(BaseModel):
    alias: str
    versions: list[VersionOut]
    jobs: list[JobOut]


class ReindexIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default

    model: str | None = None  # a model spec (path or package:name); default: the live version's model


def job_out(job: Job) -> JobOut:
    elapsed = max(time.time() - job.phase_at, 1e-6)
    rate = job.done / elapsed if job.phase == "backfill" and job.done else None
    eta = (job.total - job.done) / rate if rate and job.total > job.done else (0.0 if rate else None)
    return JobOut(
        job_id=job.job_id,
        alias=job.alias,
        kind=job.kind,
        phase=job.phase.value,
        model_id=job.model_id,
        model_spec=job.model_spec,
        from_version=job.from_version,
        to_version=job.to_version,
        done=job.done,
        total=job.total,
        embedded=job.embedded,
        rate_per_s=rate,
        eta_s=eta,
        message=job.message,
        errors=job.errors,
        cancel_requested=job.cancel,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def _conflict(exc: JobConflictError) -> JSONResponse:
    """409 naming the running job, so that a client can follow it instead."""
    return JSONResponse(
        {"detail": [{"field": "alias", "message": str(exc), "type": "conflict"}], "job_id": exc.job_id},
        status_code=409,
    )


def _found(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


def _admin(request: Request) -> AdminStore:
    store: AdminStore = request.app.state.admin_store
    return store


@router.get("/indices", response_model=IndicesOut)
def indices(request: Request, engine: EngineDep, settings: SettingsDep) -> IndicesOut:
    """The alias, its index versions (with the model each was embedded with) and recent jobs."""
    versions = [
        VersionOut(
            version=v.version,
            name=v.name,
            live=v.live,
            count=v.count,
            model_id=v.model_id,
            dimension=v.dimension,
            created_at=v.created_at.isoformat(),
            cloned_from=v.cloned_from,
        )
        for v in engine.list_versions(settings.index_alias)
    ]
    jobs = [job_out(j) for j in _admin(request).jobs(settings.index_alias, limit=10)]
    return IndicesOut(alias=settings.index_alias, versions=versions, jobs=jobs)


@router.post("/reindex", status_code=202, response_model=JobOut, responses={409: {"description": "a job runs"}})
def start_reindex(request: Request, body: Annotated[ReindexIn | None, Body()] = None) -> JobOut | JSONResponse:
    """Build version N+1 and swap the alias to it; with `model`, re-embed everything with that model."""
    model = body.model if body else None
    if model is not None:
        missing = model_missing(model)  # a 422 now, not a job that fails in the worker later
        if missing:
            raise ValidationError("model", missing)
    try:
        job = request.app.state.reindexer.start(model)
    except JobConflictError as exc:
        return _conflict(exc)
    request.app.state.reindex_queue(job.job_id)
    return job_out(job)


@router.get("/reindex/{job_id}", response_model=JobOut)
def reindex_status(job_id: str, request: Request) -> JobOut:
    """Phase, done/total, rate, ETA and errors of a job."""
    return job_out(_found(_admin(request).get(job_id), job_id))


@router.post("/reindex/{job_id}/cancel", response_model=JobOut)
def cancel_reindex(job_id: str, request: Request) -> JobOut:
    """Stop a job; its new version is dropped and the alias stays where it was."""
    return job_out(_found(_admin(request).request_cancel(job_id), job_id))


@router.post("/rollback", status_code=202, response_model=JobOut, responses={409: {"description": "a job runs"}})
def rollback(request: Request) -> JobOut | JSONResponse:
    """Move the alias back to the previous version at once; a repair job then applies what changed since."""
    try:
        job = request.app.state.reindexer.rollback()
    except JobConflictError as exc:
        return _conflict(exc)
    request.app.state.reindex_queue(job.job_id)
    return job_out(job)

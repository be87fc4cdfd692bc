"""Durable admin state: reindex jobs (so a job outlives the process that started it) and model specs
(so every process can load the model a given index version was embedded with)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from services.core.errors import TrawlError
from services.core.sqlite import SQLiteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, alias TEXT NOT NULL, kind TEXT NOT NULL, phase TEXT NOT NULL,
    model_spec TEXT NOT NULL, model_id TEXT, from_version INTEGER, to_version INTEGER,
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, embedded INTEGER NOT NULL DEFAULT 0,
    backfill_s REAL NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]', message TEXT NOT NULL DEFAULT '', cancel INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, phase_at REAL NOT NULL, heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (model_id TEXT PRIMARY KEY, spec TEXT NOT NULL);
"""


class Phase(StrEnum):
    PENDING = "pending"
    CREATING = "creating"
    BACKFILL = "backfill"  # dual write on from here
    VERIFY = "verify"
    SWAPPING = "swapping"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (Phase.PENDING, Phase.CREATING, Phase.BACKFILL, Phase.VERIFY, Phase.SWAPPING)
DUAL_WRITE = (Phase.BACKFILL, Phase.VERIFY, Phase.SWAPPING)


class JobConflictError(TrawlError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"a reindex of this alias is already running: job {job_id}")
        self.job_id = job_id


@dataclass(frozen=True)
class Job:
    job_id: str
    alias: str
    kind: str
    phase: Phase
    model_spec: str
    model_id: str | None
    from_version: int | None
    to_version: int | None
    done: int
    total: int
    embedded: int
    backfill_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    message: str = ""
    cancel: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    phase_at: float = 0.0
    heartbeat_at: float = 0.0

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE


_COLS = ", ".join(Job.__dataclass_fields__)


def _job(row: tuple[Any, ...]) -> Job:
    data = dict(zip(Job.__dataclass_fields__, row, strict=True))
    data["phase"] = Phase(data["phase"])
    data["errors"] = json.loads(data["errors"])
    data["cancel"] = bool(data["cancel"])
    return Job(**data)


class AdminStore(SQLiteDatabase):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, timeout_s=30)

    def create_job(self, alias: str, kind: str, model_spec: str) -> Job:
        """A new job, unless one is active for the alias (JobConflictError names it)."""
        now = time.time()
        with self._tx() as conn:
            marks = ",".join("?" * len(ACTIVE))
            running = conn.execute(
                f"SELECT job_id FROM jobs WHERE alias = ? AND phase IN ({marks})", (alias, *ACTIVE)
            ).fetchone()
            if running:
                raise JobConflictError(running[0])
            job_id = uuid.uuid4().hex[:16]
            conn.execute(
                "INSERT INTO jobs (job_id, alias, kind, phase, model_spec, created_at, updated_at, phase_at, "
                "heartbeat_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (job_id, alias, kind, model_spec, now, now, now, now),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute(f"SELECT {_COLS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, alias: str | None = None, limit: int = 20) -> list[Job]:
        where, args = ("WHERE alias = ?", (alias,)) if alias else ("", ())
        rows = (
            self._conn()
            .execute(f"SELECT {_COLS} FROM jobs {where} ORDER BY created_at DESC LIMIT ?", (*args, limit))
            .fetchall()
        )
        return [_job(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> Job:
        now = time.time()
        if "phase" in fields:
            fields["phase_at"] = now
        if "errors" in fields:
            fields["errors"] = json.dumps(fields["errors"])
        fields["updated_at"] = fields["heartbeat_at"] = now
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as conn:
            conn.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", (*fields.values(), job_id))
        job = self.get(job_id)
        assert job is not None
        return job

    def request_cancel(self, job_id: str) -> Job | None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET cancel = 1 WHERE job_id = ?", (job_id,))
        return self.get(job_id)

    def dual_write_versions(self, alias: str) -> list[tuple[int, str]]:
        """(version, model spec) of the versions being rebuilt: every write goes to them as well."""
        marks = ",".join("?" * len(DUAL_WRITE))
        rows = (
            self._conn()
            .execute(
                f"SELECT to_version, model_spec FROM jobs WHERE alias = ? AND phase IN ({marks}) "
                "AND to_version IS NOT NULL",
                (alias, *DUAL_WRITE),
            )
            .fetchall()
        )
        return [(int(v), str(spec)) for v, spec in rows]

    def stale_jobs(self, older_than_s: float) -> list[Job]:
        """Active jobs whose runner stopped sending heartbeats (its worker died): to be resumed."""
        marks = ",".join("?" * len(ACTIVE))
        rows = (
            self._conn()
            .execute(
                f"SELECT {_COLS} FROM jobs WHERE phase IN ({marks}) AND heartbeat_at < ?",
                (*ACTIVE, time.time() - older_than_s),
            )
            .fetchall()
        )
        return [_job(r) for r in rows]

    def remember_model(self, model_id: str, spec: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO models (model_id, spec) VALUES (?, ?)", (model_id, spec))

    def model_spec(self, model_id: str) -> str | None:
        row = self._conn().execute("SELECT spec FROM models WHERE model_id = ?", (model_id,)).fetchone()
        return str(row[0]) if row else None


def admin_store_for(data_dir: Path) -> AdminStore:
    return AdminStore(data_dir / "admin.sqlite")

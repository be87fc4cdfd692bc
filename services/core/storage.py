"""The source-of-truth blob store: raw items are written here before they are indexed, so that any index
version can be rebuilt from it. A local folder on the embedded default; an S3 bucket (boto3) on the stack."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from services.core.errors import ValidationError
from services.core.settings import BlobSettings, CoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_T = TypeVar("_T")
_R = TypeVar("_R")


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[str]: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValidationError("key", f"invalid blob key {key!r}")
    return key


class LocalBlobStore:
    """Files under a folder; each write goes to a temporary file renamed into place (atomic on POSIX)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        path = self._root / _check_key(key)
        for attempt in range(3):  # a delete may remove the folder it emptied between mkdir and mkstemp
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        for key, data in blobs:  # a local write is no round trip: in turn (64 with fsync: 50 ms here)
            self.put(key, data)

    def get(self, key: str) -> bytes | None:
        try:
            return (self._root / _check_key(key)).read_bytes()
        except FileNotFoundError:
            return None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def delete(self, key: str) -> None:
        path = self._root / _check_key(key)
        path.unlink(missing_ok=True)
        # folders a key's prefix made, once empty, go with it (as on S3, where folders do not exist)
        for parent in path.parents:
            if parent == self._root or self._root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty
                break

    def list(self, prefix: str = "") -> Iterator[str]:
        for path in sorted(self._root.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self._root).as_posix()
                if key.startswith(prefix):
                    yield key


class S3BlobStore:
    def __init__(self, settings: BlobSettings, client: S3Client | None = None) -> None:
        import boto3  # imported when an S3 store is built, not at import time

        self._bucket = settings.bucket
        self._prefix = settings.prefix
        self._concurrency = settings.concurrency
        from botocore.config import Config

        self._client: Any = client or boto3.client(
            "s3",
            config=Config(
                connect_timeout=settings.connect_timeout_s,
                read_timeout=settings.read_timeout_s,
                retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
                max_pool_connections=settings.concurrency,  # one kept connection per request in flight
            ),
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key.get_secret_value() if settings.secret_access_key else None,
        )

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self._bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self._bucket)

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._bucket, Key=self._prefix + _check_key(key), Body=data)

    def put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Every blob written when this returns; the first failure is raised once the others have finished (what
        was written stays written: each blob is whole or absent, as with `put` one after the other)."""
        self._each(lambda blob: self.put(*blob), blobs)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._each(self.get, keys)

    def _each(self, call: Callable[[_T], _R], args: Sequence[_T]) -> list[_R]:
        # S3 requests are round trips (13 ms each to the moto server here, tens of ms to a region): 64 in turn
        # were 60% of an ingestion batch. A pool per call: a Celery worker forks, and a pool's threads do not.
        if len(args) <= 1 or self._concurrency == 1:
            return [call(a) for a in args]
        with ThreadPoolExecutor(min(self._concurrency, len(args)), thread_name_prefix="blobs") as pool:
            futures = [pool.submit(call, a) for a in args]
        return [f.result() for f in futures]

    def get(self, key: str) -> bytes | None:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._prefix + _check_key(key))
        except (self._client.exceptions.NoSuchKey, self._client.exceptions.NoSuchBucket):
            return None  # a bucket not made yet holds nothing (an API host may start before the job creates it)
        body: bytes = response["Body"].read()
        return body

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._prefix + _check_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self._prefix) :]


def blob_store_for(settings: BlobSettings, folder: Path, *, create_bucket: bool = False) -> BlobStore:
    """A bucket when `settings.kind` is s3 (made first with `create_bucket`), else files under `folder`."""
    if settings.kind == "s3":
        store = S3BlobStore(settings)
        if create_bucket:
            store.ensure_bucket()
        return store
    return LocalBlobStore(folder)


def build_blob_store(settings: CoreSettings) -> BlobStore:
    return blob_store_for(settings.blobs, settings.data_dir / "blobs")

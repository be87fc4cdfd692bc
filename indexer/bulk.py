"""Bulk ingestion from a JSONL, JSON or CSV file, or an s3:// prefix: items become upsert events."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.s3_source import parse_object, s3_client
from indexer.service import item_event
from services.core.domain import Item
from services.core.errors import UnavailableError, ValidationError
from services.core.settings import BlobSettings

_LIST_FIELDS = {"tags", "categories"}
_NUMBER_FIELDS = {"price", "rating", "popularity"}


@dataclass(frozen=True)
class SourceLine:
    where: str  # file:line, for failure reports
    event: dict[str, Any] | None
    error: str | None = None


def _csv_item(row: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"attributes": {}}
    for key, value in row.items():
        if key is None or value is None or value == "":
            continue
        if key in _LIST_FIELDS:
            item[key] = [v.strip() for v in value.split("|") if v.strip()]
        elif key in _NUMBER_FIELDS:
            try:
                item[key] = float(value)
            except ValueError:
                raise ValueError(f"column {key}: {value!r} is not a number") from None
        elif key == "available":
            item[key] = value.strip().lower() in ("1", "true", "yes")
        elif key in Item.model_fields:
            item[key] = value
        else:
            item["attributes"][key] = value
    return item


def read_text(text: str, name: str) -> Iterator[SourceLine]:
    if name.endswith(".csv"):
        for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            try:
                yield SourceLine(f"{name}:{n}", {"op": "upsert", "item": _csv_item(row)})
            except ValueError as exc:
                yield SourceLine(f"{name}:{n}", None, str(exc))
        return
    if name.endswith(".json"):
        for n, event in enumerate(parse_object(text.encode(), name), start=1):
            yield SourceLine(f"{name}[{n}]", event)
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            yield SourceLine(f"{name}:{n}", None, f"not JSON: {exc}")
            continue
        event = data if isinstance(data, dict) and "op" in data else item_event(data)
        yield SourceLine(f"{name}:{n}", event)


def read_source(location: str, blobs: BlobSettings) -> Iterator[SourceLine]:
    """Lines of a local file, or of every object under an s3:// prefix."""
    if location.startswith("s3://"):
        yield from _read_s3(location, blobs)
        return
    path = Path(location)
    if not path.is_file():
        raise ValidationError("path", f"{location} is not a file")
    if path.suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise ValidationError("path", "expected a .jsonl, .ndjson, .json or .csv file")
    yield from read_text(path.read_text(encoding="utf-8"), path.name)


def _read_s3(location: str, blobs: BlobSettings) -> Iterator[SourceLine]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    client = s3_client(blobs)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
                yield from read_text(body, f"s3://{bucket}/{obj['Key']}")
    except ClientError as exc:  # the storage answered: no such bucket, access denied
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ValidationError("location", f"cannot read {location}: {code}") from None
    except BotoCoreError as exc:  # no credentials, nothing listening at the endpoint
        raise UnavailableError(f"object storage cannot be reached for {location}: {exc}") from None

"""S3 event notifications (ObjectCreated / ObjectRemoved) for a bucket of item files, JSON or JSONL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from indexer.events import parse_events
from indexer.ledger import EventLedger
from indexer.service import IngestService, encode_items_as_events, to_new_event
from services.core.errors import UnavailableError, ValidationError
from services.core.settings import BlobSettings

# Answers about the object itself: retrying the notification would not help, so they are reported per object.
_UNREADABLE = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidObjectState", "404", "403"})


@dataclass(frozen=True)
class ObjectOutcome:
    bucket: str
    key: str
    action: str
    accepted: int
    rejected: list[str]


def s3_client(settings: BlobSettings) -> Any:
    import boto3

    secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=secret,
    )


def parse_object(body: bytes, key: str) -> list[dict[str, Any]]:
    """A JSON object (one item), a JSON array (items), or JSONL (an item or event per line)."""
    text = body.decode("utf-8")
    if key.endswith(".jsonl") or key.endswith(".ndjson"):
        return encode_items_as_events(text.splitlines())
    data = json.loads(text)
    items = data if isinstance(data, list) else [data]
    return encode_items_as_events([json.dumps(i) for i in items])


class S3EventHandler:
    def __init__(self, service: IngestService, ledger: EventLedger, client: Any) -> None:
        self._service = service
        self._ledger = ledger
        self._client = client

    def handle(self, notification: dict[str, Any]) -> list[ObjectOutcome]:
        records = notification.get("Records")
        if not isinstance(records, list):
            raise ValidationError("Records", "an S3 event notification must carry a Records list")
        return [self._record(i, r) for i, r in enumerate(records)]

    def _fetch(self, bucket: str, key: str, source: str) -> bytes | str:
        """The object's bytes, or why this object cannot be read (deleted since, no such bucket, access denied).
        Storage that cannot be reached at all, or without credentials, is an UnavailableError (a 503: S3,
        SNS and webhooks retry those)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(self._client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "error"))
            if code in _UNREADABLE:
                return f"cannot read {source}: {code}"
            raise UnavailableError(f"object storage refused to read {source}: {code}") from exc
        except BotoCoreError as exc:
            raise UnavailableError(f"object storage cannot be reached to read {source}: {exc}") from exc

    def _record(self, i: int, record: Any) -> ObjectOutcome:
        try:
            name = record["eventName"]
            bucket = record["s3"]["bucket"]["name"]
            key = unquote_plus(record["s3"]["object"]["key"])  # keys arrive URL-encoded
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"Records[{i}]", f"missing {exc}") from None
        source = f"s3://{bucket}/{key}"
        if name.startswith("ObjectRemoved"):
            ids = self._ledger.forget_object(source)
            events = parse_events([{"op": "delete", "id": item_id} for item_id in ids])[0]
            self._service.accept_new([to_new_event(ev, source) for _, ev in events])
            return ObjectOutcome(bucket, key, "removed", len(ids), [])
        if not name.startswith("ObjectCreated"):
            return ObjectOutcome(bucket, key, "ignored", 0, [])
        body = self._fetch(bucket, key, source)
        if isinstance(body, str):  # the object is gone or refused to us: the other records still count
            return ObjectOutcome(bucket, key, "created", 0, [body])
        try:
            raw = parse_object(body, key)
        except (ValueError, UnicodeDecodeError) as exc:
            return ObjectOutcome(bucket, key, "created", 0, [f"object is not JSON or JSONL: {exc}"])
        good, bad = parse_events(raw)
        recorded = self._service.accept_new([to_new_event(ev, source) for _, ev in good])
        self._ledger.remember_object(source, [r.item_id for r in recorded if r.op != "delete"])
        return ObjectOutcome(bucket, key, "created", len(recorded), [f"{p.field}: {p.message}" for p in bad])

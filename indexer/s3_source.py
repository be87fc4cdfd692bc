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


def unwrap_sns(message: dict[str, Any]) -> dict[str, Any]:
    """The S3 notification inside an SNS HTTP(S) delivery (`Type: Notification`, the notification as JSON
    text in `Message`); anything else as it came. A subscription must be confirmed by whoever set it up (its
    SubscribeURL): this endpoint fetches no address a request names."""
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        raise ValidationError(
            "Type", "an SNS subscription confirmation: confirm it by opening its SubscribeURL (it is not fetched here)"
        )
    if kind != "Notification" or "Message" not in message:
        return message
    try:
        inner = json.loads(message["Message"])
    except (TypeError, ValueError):
        inner = None
    if not isinstance(inner, dict):
        raise ValidationError("Message", "an SNS notification's Message must be an S3 notification as JSON")
    return inner


def _checked(i: int, record: Any) -> tuple[str, str, str]:
    """(event name, bucket, key) of a record, or a ValidationError naming what is missing or wrong."""
    where = f"Records.{i}"
    try:
        name, bucket, key = record["eventName"], record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]
    except (KeyError, TypeError, IndexError) as exc:
        raise ValidationError(where, f"missing {exc}") from None
    for field, value in (("eventName", name), ("s3.bucket.name", bucket), ("s3.object.key", key)):
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{where}.{field}", "must be a non-empty string")
    return name, bucket, unquote_plus(key)  # keys arrive URL-encoded


def _mentioned(event: Any) -> str | None:
    """The item id a raw event names, if it names one."""
    if not isinstance(event, dict):
        return None
    item = event.get("item")
    found = (
        event.get("id")
        if event.get("op") in ("patch", "delete")
        else item.get("id")
        if isinstance(item, dict)
        else None
    )
    return found if isinstance(found, str) and found else None


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
        """The objects of an S3 event notification, sent as is (S3 webhooks, MinIO) or in an SNS envelope.
        Every record is checked before any is acted on: a bad one accepts nothing."""
        notification = unwrap_sns(notification)
        if notification.get("Event") == "s3:TestEvent":  # what S3 sends when a notification is configured
            return []
        records = notification.get("Records")
        if not isinstance(records, list):
            raise ValidationError("Records", "an S3 event notification must carry a Records list")
        checked = [_checked(i, r) for i, r in enumerate(records)]
        return [self._record(*c) for c in checked]

    def _fetch(self, bucket: str, key: str, source: str) -> bytes | str:
        """The object's bytes, or why this object cannot be read (deleted since, no such bucket, access denied).
        Storage that cannot be reached at all, or without credentials, is an UnavailableError (a 503: S3,
        SNS and webhooks retry those)."""
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

        try:
            return bytes(self._client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "error"))
            if code in _UNREADABLE:
                return f"cannot read {source}: {code}"
            raise UnavailableError(f"object storage refused to read {source}: {code}") from exc
        except ParamValidationError as exc:  # a bucket name or key S3 cannot take
            return f"cannot read {source}: {exc}"
        except BotoCoreError as exc:
            raise UnavailableError(f"object storage cannot be reached to read {source}: {exc}") from exc

    def _record(self, name: str, bucket: str, key: str) -> ObjectOutcome:
        source = f"s3://{bucket}/{key}"
        if name.startswith("ObjectRemoved"):
            ids = self._ledger.forget_object(source)  # the items no other object holds
            self._delete(ids, source)
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
        held = [r.item_id for r in recorded if r.op != "delete"]
        # an item the object held and still names, on a line refused this time, is not taken as dropped from it
        refused = [i for i in (_mentioned(raw[p.index]) for p in bad) if i]
        dropped = self._ledger.replace_object(source, held, still=refused)  # an overwrite without it deletes it
        self._delete(dropped, source)
        rejected = [f"{p.field}: {p.message}" for p in bad]
        return ObjectOutcome(bucket, key, "created", len(recorded) + len(dropped), rejected)

    def _delete(self, item_ids: list[str], source: str) -> None:
        events = parse_events([{"op": "delete", "id": item_id} for item_id in item_ids])[0]
        self._service.accept_new([to_new_event(ev, source) for _, ev in events])

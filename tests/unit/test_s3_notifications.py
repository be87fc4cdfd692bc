"""S3 event notifications as senders send them: plain, inside an SNS delivery, S3's test event; a missing
object or bucket reported for that object; a malformed record refused before anything is accepted. Real
objects on the moto server; the ledger is the real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from indexer.celery_app import create_celery
from indexer.ledger import EventLedger
from indexer.s3_source import S3EventHandler, s3_client
from indexer.service import IngestService
from indexer.settings import IndexerSettings
from services.core.errors import ValidationError
from services.core.settings import BlobSettings

pytestmark = pytest.mark.unit


def record(bucket: Any, key: Any, name: Any = "ObjectCreated:Put") -> dict[str, Any]:
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


@pytest.fixture
def world(tmp_path: Path, s3_settings: BlobSettings) -> tuple[S3EventHandler, EventLedger, str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = s3_settings.bucket
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="drop/a.json", Body=json.dumps({"id": "a", "title": "Alpha"}).encode())
    ledger = EventLedger(tmp_path / "ledger.sqlite")
    service = IngestService(ledger, create_celery(IndexerSettings(data_dir=tmp_path / "var")))
    return S3EventHandler(service, ledger, s3_client(s3_settings)), ledger, bucket


def test_a_notification_in_an_sns_envelope_and_s3s_test_event(world: tuple[S3EventHandler, EventLedger, str]) -> None:
    handler, ledger, bucket = world
    sns = {"Type": "Notification", "Message": json.dumps({"Records": [record(bucket, "drop/a.json")]})}
    (outcome,) = handler.handle(sns)
    assert (outcome.key, outcome.accepted, outcome.rejected) == ("drop/a.json", 1, [])
    assert [e.item_id for e in ledger.by_item("a")] == ["a"]
    assert handler.handle({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}) == []
    with pytest.raises(ValidationError) as confirm:
        handler.handle({"Type": "SubscriptionConfirmation", "SubscribeURL": "http://127.0.0.1:9/x"})
    assert confirm.value.field == "Type" and "SubscribeURL" in confirm.value.message
    with pytest.raises(ValidationError) as garbled:
        handler.handle({"Type": "Notification", "Message": "not json"})
    assert garbled.value.field == "Message"


def test_an_object_gone_or_a_bucket_missing_is_reported_for_that_object_only(
    world: tuple[S3EventHandler, EventLedger, str],
) -> None:
    handler, _, bucket = world
    gone, missing, fine = handler.handle(
        {
            "Records": [
                record(bucket, "drop/deleted-since.json"),
                record(f"{bucket}-x", "a.json"),
                record(bucket, "drop/a.json"),
            ]
        }
    )
    assert gone.rejected == [f"cannot read s3://{bucket}/drop/deleted-since.json: NoSuchKey"]
    assert missing.rejected == [f"cannot read s3://{bucket}-x/a.json: NoSuchBucket"]
    assert (fine.accepted, fine.rejected) == (1, [])


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (record("b", "k", name=123), "Records.1.eventName"),
        (record("b", 123), "Records.1.s3.object.key"),
        (record("", "k"), "Records.1.s3.bucket.name"),
        ({"eventName": "ObjectCreated:Put"}, "Records.1"),
    ],
)
def test_a_malformed_record_is_refused_before_any_record_is_accepted(
    world: tuple[S3EventHandler, EventLedger, str], bad: dict[str, Any], field: str
) -> None:
    handler, ledger, bucket = world
    with pytest.raises(ValidationError) as refused:
        handler.handle({"Records": [record(bucket, "drop/a.json"), bad]})
    assert refused.value.field == field
    assert ledger.by_item("a") == []  # the good record before it was not accepted either: a resend is safe


def test_removing_or_overwriting_an_object_deletes_only_what_no_other_object_holds(
    world: tuple[S3EventHandler, EventLedger, str], s3_settings: BlobSettings
) -> None:
    handler, ledger, bucket = world
    s3 = s3_client(s3_settings)

    def put(key: str, items: list[dict[str, Any]]) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body="\n".join(json.dumps(i) for i in items).encode())
        handler.handle({"Records": [record(bucket, key)]})

    def deletes() -> set[str]:
        return {e.item_id for item in "abcdxy" for e in ledger.by_item(item) if e.op == "delete"}

    put("one.jsonl", [{"id": "a", "title": "A"}, {"id": "x", "title": "X"}])
    put("two.jsonl", [{"id": "a", "title": "A again"}, {"id": "b", "title": "B"}])
    handler.handle({"Records": [record(bucket, "one.jsonl", name="ObjectRemoved:Delete")]})
    assert deletes() == {"x"}  # a is still in two.jsonl
    # two.jsonl rewritten: b is gone from it, c is new, and a stays though its line is refused this time
    put("two.jsonl", [{"id": "a", "title": "A", "price": "free"}, {"id": "c", "title": "C"}])
    assert deletes() == {"x", "b"}
    handler.handle({"Records": [record(bucket, "two.jsonl", name="ObjectRemoved:Delete")]})
    assert deletes() == {"x", "b", "a", "c"}
    # an object naming an item it never brought (its line refused) does not take it down when removed
    put("three.jsonl", [{"id": "d", "title": "D", "price": "free"}, {"id": "y", "title": "Y"}])
    handler.handle({"Records": [record(bucket, "three.jsonl", name="ObjectRemoved:Delete")]})
    assert deletes() == {"x", "b", "a", "c", "y"}

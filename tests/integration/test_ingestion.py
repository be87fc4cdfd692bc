"""Ingestion end to end on the real stack: HTTP API -> ledger -> Redis -> Celery worker -> OpenSearch,
with the source of truth on S3 (moto server)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest

from indexer.ledger import EventLedger
from services.core.engines.opensearch import OpenSearchEngine
from services.core.settings import CoreSettings, OpenSearchSettings
from services.datasets.cranfield import as_item, load_docs
from services.datasets.cranfield import available as cranfield_available
from tests.integration.conftest import MOTO_URL, OPENSEARCH_URL, wait_until_done

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def engine_for(env: dict[str, str]) -> OpenSearchEngine:
    return OpenSearchEngine(CoreSettings(engine="opensearch", opensearch=OpenSearchSettings(hosts=[OPENSEARCH_URL])))


def ledger_for(env: dict[str, str]) -> EventLedger:
    return EventLedger(Path(env["TRAWL_DATA_DIR"]) / "ledger.sqlite")


def post_events(api_url: str, events: list[dict[str, Any]]) -> list[str]:
    ids = []
    with httpx.Client(base_url=api_url, timeout=60) as client:
        for start in range(0, len(events), 500):
            r = client.post("/v1/events/content", json={"events": events[start : start + 500]})
            assert r.status_code == 202, r.text
            body = r.json()
            assert not body["rejected"], body["rejected"][:3]
            ids += [a["event_id"] for a in body["accepted"]]
    return ids


@pytest.mark.skipif(not cranfield_available(), reason="the Cranfield collection (../shared/data) is not here")
def test_cranfield_through_http_is_all_searchable_and_a_delete_hides_everywhere(
    stack_env: dict[str, str], services: Callable[..., Any]
) -> None:
    api = services("api", stack_env)
    services("worker", stack_env)
    docs = load_docs()
    ids = post_events(api.url, [{"op": "upsert", "item": as_item(d)} for d in docs])
    assert len(ids) == 1400
    counts = wait_until_done(ledger_for(stack_env), timeout=900, expect=1400)
    assert counts["indexed"] == 1400 and counts["dead"] == 0, counts
    alias = stack_env["TRAWL_INDEX_ALIAS"]
    engine = engine_for(stack_env)
    engine.refresh(alias)
    assert engine.count(alias) == 1400
    # every document is findable by its own title through BM25
    sample = [d for d in docs if len(d.title.split()) >= 4][:50]
    found = sum(d.id in {h.id for h in engine.keyword_search(alias, d.title, k=10)} for d in sample)
    assert found >= 48, found

    target = next(d for d in docs if d.id == "1")
    stored = engine.get(alias, ["1"], with_vectors=True)[0]
    assert stored.vector is not None
    assert "1" in [h.id for h in engine.prefix_suggest(alias, " ".join(target.title.split()[:3]), k=10)]
    assert engine.vector_search(alias, stored.vector, k=1)[0].id == "1"

    post_events(api.url, [{"op": "delete", "id": "1"}])
    wait_until_done(ledger_for(stack_env), timeout=120, expect=1401)
    engine.refresh(alias)
    assert "1" not in {h.id for h in engine.keyword_search(alias, target.title, k=50)}
    assert "1" not in {h.id for h in engine.vector_search(alias, stored.vector, k=50)}
    assert "1" not in {h.id for h in engine.prefix_suggest(alias, " ".join(target.title.split()[:3]), k=50)}
    with httpx.Client(base_url=api.url) as client:
        hits = client.get("/v1/search", params={"q": target.title, "size": 50}).json()
        assert "1" not in [h["id"] for h in hits["items"]]
        assert hits["items"], "search through the API returns the other documents"
    engine.drop_alias(alias)


def test_dead_letter_holds_a_bad_event_with_its_reason_and_replay_works_once_fixed(
    stack_env: dict[str, str], services: Callable[..., Any]
) -> None:
    api = services("api", stack_env)
    services("worker", stack_env)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        r = client.post(
            "/v1/events/content",
            json=[
                {"op": "patch", "id": "ghost", "fields": {"title": "Patched ghost"}, "version": 10},
                {
                    "op": "upsert",
                    "item": {"id": "x", "title": "t" * 2000},
                },  # rejected at the door: title too long
                {"op": "upsert", "item": {"id": "fine", "title": "A fine item"}},
            ],
        )
        assert r.status_code == 202
        body = r.json()
        assert [x["index"] for x in body["rejected"]] == [1]
        assert body["rejected"][0]["field"] == "events[1].item.title"
        patch_id = body["accepted"][0]["event_id"]
        wait_until_done(ledger_for(stack_env), timeout=120, expect=2)
        status = client.get(f"/v1/events/{patch_id}").json()
        assert status["state"] == "dead" and "does not exist" in status["error"]

        listed = subprocess.run(
            [sys.executable, "-m", "services.cli", "dlq", "list", "--json"],
            env=_env(stack_env),
            capture_output=True,
            text=True,
            check=True,
        )
        assert [e["event_id"] for e in json.loads(listed.stdout)] == [patch_id]
        dlq = client.get("/admin/dlq").json()  # no admin key configured: loopback callers only
        assert dlq["count"] == 1 and dlq["events"][0]["error"] == status["error"]

        client.post(
            "/v1/events/content",
            json={"op": "upsert", "item": {"id": "ghost", "title": "Ghost"}, "version": 1},
        )  # the cause, fixed
        wait_until_done(ledger_for(stack_env), timeout=120, expect=3)
        subprocess.run(
            [sys.executable, "-m", "services.cli", "dlq", "replay", patch_id],
            env=_env(stack_env),
            check=True,
            capture_output=True,
        )
        wait_until_done(ledger_for(stack_env), timeout=120)
        assert client.get(f"/v1/events/{patch_id}").json()["state"] == "indexed"
        assert client.get("/v1/events/nope").status_code == 404
    engine = engine_for(stack_env)
    assert engine.get(stack_env["TRAWL_INDEX_ALIAS"], ["ghost"])[0].item.title == "Patched ghost"
    engine.drop_alias(stack_env["TRAWL_INDEX_ALIAS"])


def test_s3_notifications_ingest_and_remove_objects(stack_env: dict[str, str], services: Callable[..., Any]) -> None:
    api = services("api", stack_env)
    services("worker", stack_env)
    s3 = boto3.client(
        "s3",
        endpoint_url=MOTO_URL,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = "catalog-" + stack_env["TRAWL_INDEX_ALIAS"]
    s3.create_bucket(Bucket=bucket)
    lines = [json.dumps({"id": f"s3-{i}", "title": f"Glider wing study {i}", "tags": ["s3"]}) for i in range(5)]
    s3.put_object(Bucket=bucket, Key="drops/batch one.jsonl", Body="\n".join(lines).encode())

    def notify(event_name: str) -> dict[str, Any]:
        record = {
            "eventName": event_name,
            "s3": {"bucket": {"name": bucket}, "object": {"key": "drops/batch+one.jsonl"}},
        }
        r = httpx.post(f"{api.url}/v1/events/s3", json={"Records": [record]}, timeout=30)
        assert r.status_code == 202, r.text
        return dict(r.json())

    assert notify("ObjectCreated:Put")["objects"][0]["accepted"] == 5
    wait_until_done(ledger_for(stack_env), timeout=120, expect=5)
    engine = engine_for(stack_env)
    alias = stack_env["TRAWL_INDEX_ALIAS"]
    engine.refresh(alias)
    assert sorted(d.item.id for d in engine.get(alias, [f"s3-{i}" for i in range(5)])) == [f"s3-{i}" for i in range(5)]
    # the source of truth holds the raw items in the S3 bucket named by the settings
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack_env["TRAWL_BLOBS__BUCKET"])["Contents"]]
    assert len(keys) == 5

    # the bulk CLI reads an s3:// prefix too
    s3.put_object(Bucket=bucket, Key="bulk/part-1.json", Body=json.dumps([{"id": "bulk-1", "title": "Delta wing"}]))
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", f"s3://{bucket}/bulk/", "--json"],
        env=_env(stack_env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 1
    engine.refresh(alias)
    assert [d.item.title for d in engine.get(alias, ["bulk-1"])] == ["Delta wing"]

    s3.delete_object(Bucket=bucket, Key="drops/batch one.jsonl")
    assert notify("ObjectRemoved:Delete")["objects"][0]["accepted"] == 5
    wait_until_done(ledger_for(stack_env), timeout=120, expect=11)
    engine.refresh(alias)
    assert engine.get(alias, [f"s3-{i}" for i in range(5)]) == []
    engine.drop_alias(alias)


def test_bulk_cli_ingests_a_jsonl_file_with_progress_and_reports_failures(
    stack_env: dict[str, str], services: Callable[..., Any], tmp_path: Path
) -> None:
    services("worker", stack_env)
    good = [{"id": f"b{i}", "title": f"Boundary layer note {i}", "price": float(i)} for i in range(40)]
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join([*map(json.dumps, good), "{not json", json.dumps({"id": ""})]) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", str(path)],
        env=_env(stack_env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # two bad lines: a non-zero exit and a summary naming them
    assert "40 accepted" in done.stderr and "2 failed" in done.stderr
    assert "catalog.jsonl:41" in done.stderr and "catalog.jsonl:42" in done.stderr
    assert "indexing" in done.stderr and "items/s" in done.stderr  # the progress bar
    engine = engine_for(stack_env)
    alias = stack_env["TRAWL_INDEX_ALIAS"]
    engine.refresh(alias)
    assert engine.count(alias) == 40
    vec = engine.get(alias, ["b7"], with_vectors=True)[0].vector
    assert vec is not None and np.isclose(np.linalg.norm(vec), 1.0, atol=1e-3)
    engine.drop_alias(alias)


def _env(env: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **env}

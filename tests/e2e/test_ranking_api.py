"""Scoring and re-ranking end to end: a real uvicorn server over the film catalog (embedded engine, real
embeddings), the shipped LambdaRank model serving, rules managed through /admin/rules, and model reloads
through /admin/model/reload while searches run."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.core.embedding import SentenceTransformerEmbedder
from services.core.engines.base import Document
from services.core.storage import LocalBlobStore
from services.ranking.features import SEARCH_FEATURES, FeatureExtractor, FeatureSet
from services.ranking.registry import DEFAULT_MODEL_DIR, ModelRegistry
from services.ranking.settings import RankingSettings
from services.ranking.train import QueryRows, TrainingSet, train_model
from tests.support.index import live_index
from tests.support.server import Server

pytestmark = pytest.mark.e2e
KEY = "test-admin-key"


@dataclass
class Api:
    client: httpx.Client
    admin: httpx.Client
    data_dir: Path
    titles: dict[str, str]  # id -> title
    settings: ApiSettings

    def search(self, q: str, **params: Any) -> dict[str, Any]:
        r = self.client.get("/v1/search", params={"q": q, **params})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        r = self.client.get(path, params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def ids(self, q: str, **params: Any) -> list[str]:
        return [h["id"] for h in self.search(q, **params)["items"]]

    def rule(self, **body: Any) -> str:
        r = self.admin.post("/admin/rules", json={"name": "test", **body})
        assert r.status_code == 201, r.text
        rule_id: str = r.json()["id"]
        return rule_id

    def drop(self, rule_id: str) -> None:
        assert self.admin.delete(f"/admin/rules/{rule_id}").status_code == 204


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder, film_documents: list[Document]
) -> Iterator[Api]:
    alias = f"rank-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path_factory.mktemp("ranking") / "var"
    settings = ApiSettings(
        engine="embedded",
        data_dir=data_dir,
        index_alias=alias,
        admin_key=KEY,  # type: ignore[arg-type]
        ranking=RankingSettings(model="current"),  # an empty registry: the shipped default model
    )
    engine = live_index(settings, embedder, film_documents)
    try:
        with (
            Server(create_app(settings, embedder=embedder)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
            httpx.Client(base_url=server.url, timeout=30, headers={"X-Admin-Key": KEY}) as admin,
        ):
            yield Api(client, admin, data_dir, {d.item.id: d.item.title for d in film_documents}, settings)
    finally:
        engine.drop_alias(alias)
        engine.close()


def test_the_shipped_model_scores_and_explain_shows_every_stage(api: Api) -> None:
    got = api.search("batman", explain="true", size=5)
    scorer = got["explain"]["scorer"]
    assert scorer.startswith("lambdarank(model=default-trawl-search"), scorer
    assert got["explain"]["reranker"].startswith("rules(0 active")
    assert {"retrieval", "fusion", "scoring", "reranking"} <= set(got["explain"]["timings_ms"])
    for hit in got["items"]:
        e = hit["explain"]
        assert e["retrievers"] and e["features"]["query_terms"] == 1.0 and "rrf" in e["features"]
        assert e["scoring"]["rank"] == e["reranking"]["rank"] == hit["rank"]
    ranks = [(h["explain"]["fusion"]["rank"], h["explain"]["scoring"]["rank"]) for h in got["items"]]
    assert len(ranks) == 5
    # the exact title still comes first with the model in place
    assert api.search("The Dark Knight Rises")["items"][0]["item"]["title"] == "The Dark Knight Rises"


def test_the_shipped_model_puts_a_typod_title_and_a_persons_films_first(api: Api) -> None:
    """What a film or product catalog is asked most, with the answers its own fields give (as the film
    evaluation in docs/evaluation.md derives them). The model shipped before this one served a typo'd title
    first for a third of such queries on 3,000 films, and a person's films first for as few."""
    from services.datasets.films import film_credits
    from services.ranking.evaluate_films import misspelt, typed

    by_text: dict[str, list[str]] = {}
    for item_id, title in api.titles.items():
        by_text.setdefault(typed(title), []).append(item_id)
    typos = {
        bad: ids[0]
        for text, ids in sorted(by_text.items())
        if len(ids) == 1 and (bad := misspelt(text)) is not None and bad not in by_text
    }
    first = [api.ids(q, size=1)[0] == want for q, want in list(typos.items())[:40]]
    assert len(first) == 40 and sum(first) >= 36, f"{sum(first)} of {len(first)} typo'd titles first"

    credits = film_credits(len(api.titles) + 50)
    films_of: dict[str, set[str]] = {}
    for item_id in api.titles:
        for name in credits[item_id].cast:
            films_of.setdefault(typed(name), set()).add(item_id)
    people = sorted(n for n, f in films_of.items() if len(f) >= 3 and " " in n)[:30]
    hits = [api.ids(name, size=1)[0] in films_of[name] for name in people]
    assert len(hits) == 30 and sum(hits) >= 27, f"{sum(hits)} of {len(hits)} actors' queries led by one of their films"


def test_a_pinned_item_is_first_and_explain_names_the_rule(api: Api) -> None:
    target = api.ids("space adventure", size=1000)[-1]  # the last of the list
    rule_id = api.rule(action="pin", items=[target], position=1, when={"query": "space adventure"})
    try:
        got = api.search("Space  Adventure", explain="true")
        first = got["items"][0]
        assert first["id"] == target
        (effect,) = first["explain"]["rules"]
        assert effect["rule"] == rule_id and effect["action"] == "pin"
        assert api.ids("space adventures")[0] != target  # an exact-query rule: another query is untouched
    finally:
        api.drop(rule_id)
    assert api.ids("space adventure")[0] != target


def test_a_hidden_item_never_appears(api: Api) -> None:
    top = api.ids("batman")[0]
    neighbour = api.get(f"/v1/items/{top}/similar", size=1)["items"][0]["id"]

    def elsewhere() -> dict[str, list[str]]:
        """Where `top` could show outside a search: suggest, similar items, recommendations from a seed."""
        suggest = api.get("/v1/suggest", q=api.titles[top][:7], size=50)
        similar = api.get(f"/v1/items/{neighbour}/similar", size=50)
        recs = api.client.post("/v1/recommendations", json={"seed_item_ids": [neighbour], "k": 100})
        assert recs.status_code == 200, recs.text
        lists = {"suggest": suggest["items"], "similar": similar["items"], "recs": recs.json()["items"]}
        return {name: [i["id"] for i in items] for name, items in lists.items()}

    assert all(top in found for found in elsewhere().values())  # so that the checks below could fail
    rule_id = api.rule(action="hide", items=[top])
    try:
        for q in ("batman", "dark knight", "gotham"):
            assert top not in api.ids(q, size=1000)
        assert top not in api.ids("batman", size=1000, mode="keyword")
        hidden = elsewhere()  # a takedown holds on every endpoint, and each answer still fills up
        assert all(top not in found for found in hidden.values()), hidden
        assert len(hidden["similar"]) == 50 and len(hidden["recs"]) == 100
    finally:
        api.drop(rule_id)
    assert api.ids("batman")[0] == top
    assert all(top in found for found in elsewhere().values())


def test_a_diversity_cap_holds(api: Api) -> None:
    # The top 5 can always meet the cap here; in the top 10 this genre-heavy catalog runs out of candidates
    # whose genres are all below the cap (the rule then says so; tests/unit/test_rules.py).
    q = "crime thriller"
    rule_id = api.rule(action="diversity", field="categories", max_per=3, top_k=5, when={"query": q})
    try:
        top = api.search(q, size=5)["items"]
        counts: dict[str, int] = {}
        for hit in top:
            for c in hit["item"]["categories"]:
                counts[c] = counts.get(c, 0) + 1
        assert max(counts.values()) <= 3, counts
    finally:
        api.drop(rule_id)
    before = api.search(q, size=5)["items"]
    assert max(sum(c in h["item"]["categories"] for h in before) for c in ("Drama", "Crime", "Thriller")) > 3


def test_an_expired_rule_does_nothing(api: Api) -> None:
    before = api.ids("romantic comedy")
    target = before[-1]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    rule_id = api.rule(action="pin", items=[target], valid_until=past)
    try:
        assert api.ids("romantic comedy") == before
        listed = {r["id"]: r for r in api.admin.get("/admin/rules").json()["rules"]}
        assert listed[rule_id]["active"] is False
    finally:
        api.drop(rule_id)


def test_rules_crud_validation_conflicts_and_the_admin_key(api: Api) -> None:
    assert api.client.get("/admin/rules").status_code == 401  # no key
    wrong = api.client.get("/admin/rules", headers={"X-Admin-Key": "é".encode()})
    assert wrong.status_code == 401, wrong.text  # not ASCII: compared as bytes, refused (a TypeError before)
    bad = api.admin.post("/admin/rules", json={"name": "x", "action": "boost", "items": ["a"]})
    assert bad.status_code == 422 and "amount" in bad.text
    unknown = api.admin.post(
        "/admin/rules", json={"name": "x", "action": "hide", "target": {"term": {"colour": "red"}}}
    )
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "target.term"
    first = api.rule(action="boost", items=["film-a"], amount=0.5)
    clash = api.admin.post("/admin/rules", json={"name": "y", "action": "bury", "items": ["film-a"], "amount": 0.2})
    assert clash.status_code == 409
    assert clash.json()["conflicts"][0]["rule_id"] == first and "buries" in clash.json()["conflicts"][0]["reason"]
    replaced = api.admin.put(
        f"/admin/rules/{first}", json={"name": "renamed", "action": "boost", "items": ["film-b"], "amount": 1}
    )
    assert replaced.status_code == 200 and replaced.json()["name"] == "renamed"
    assert api.admin.get(f"/admin/rules/{first}").json()["items"] == ["film-b"]
    api.drop(first)
    assert api.admin.get(f"/admin/rules/{first}").status_code == 404
    assert api.admin.delete(f"/admin/rules/{first}").status_code == 404


def tiny_model(feature_set: FeatureSet, model_id: str) -> tuple[str, Any]:
    """A model trained in a second on synthetic rows (enough to be loaded and served)."""
    import numpy as np

    rng = np.random.default_rng(3)
    rows = []
    for q in range(8):
        x = rng.random((10, len(feature_set.names))).astype(np.float32)
        y = (np.arange(10) == 2).astype(float) * 2
        rows.append(QueryRows(f"q{q}", tuple(f"d{i}" for i in range(10)), x, y))
    ts = TrainingSet(feature_set, FeatureExtractor().params, 100, "synthetic", rows, {})
    t = train_model(ts, rounds=3, folds=0, params={"min_data_in_leaf": 2}, model_id=model_id)
    return t.model_text, t.card


def test_model_reload_under_load_drops_no_request_and_a_wrong_model_is_refused(api: Api) -> None:
    registry = ModelRegistry(LocalBlobStore(api.data_dir / "models"))  # the server's registry folder
    registry.publish(*tiny_model(SEARCH_FEATURES, "tiny-ok"))
    wrong = FeatureSet(SEARCH_FEATURES.name, SEARCH_FEATURES.version, SEARCH_FEATURES.features[:-1])
    registry.publish(*tiny_model(wrong, "tiny-wrong"))
    assert (DEFAULT_MODEL_DIR / "model.txt").exists()

    failures: list[str] = []
    served: set[str] = set()
    done = threading.Event()
    count = [0]

    def loop() -> None:
        with httpx.Client(base_url=str(api.client.base_url), timeout=30) as client:
            deadline = time.monotonic() + 60  # bounded, whatever happens
            while not done.is_set() and time.monotonic() < deadline:
                r = client.get("/v1/search", params={"q": "space war", "explain": "true", "size": 3})
                count[0] += 1
                if r.status_code != 200 or not r.json()["items"]:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    served.add(r.json()["explain"]["scorer"].split(";")[0])

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for name in ("tiny-ok", "default", "none", "tiny-ok", "current", "tiny-ok"):
            r = api.admin.post("/admin/model/reload", json={"model": name})
            assert r.status_code == 200, r.text
            time.sleep(0.3)
        refused = api.admin.post("/admin/model/reload", json={"model": "tiny-wrong"})
        assert refused.status_code == 409
        message = refused.json()["detail"][0]["message"]
        assert "tiny-wrong refused" in message and f"missing ['{SEARCH_FEATURES.names[-1]}']" in message
        missing = api.admin.post("/admin/model/reload", json={"model": "no-such-model"})
        assert missing.status_code == 409 and "no model 'no-such-model'" in missing.text
        time.sleep(0.3)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:3]
    assert count[0] >= 10
    assert {"lambdarank(model=tiny-ok", "fused order (fallback: model set to 'none')"} <= served, served
    state = api.admin.get("/admin/model").json()
    assert state["served"]["model_id"] == "tiny-ok"  # the refused model did not replace it
    assert state["metrics"]["refused"] == 2 and state["metrics"]["reloads"] >= 6
    assert set(state["registry_models"]) == {"tiny-ok", "tiny-wrong"}
    api.admin.post("/admin/model/reload", json={"model": "default"})


def test_a_reload_sent_to_one_process_reaches_the_others(api: Api, embedder: SentenceTransformerEmbedder) -> None:
    registry = ModelRegistry(LocalBlobStore(api.data_dir / "models"))
    registry.publish(*tiny_model(SEARCH_FEATURES, "tiny-fleet"))
    following = api.settings.model_copy(update={"ranking": RankingSettings(model="current", follow_every_s=0.2)})

    def scorer(client: httpx.Client) -> str:
        r = client.get("/v1/search", params={"q": "space war", "explain": "true", "size": 3})
        assert r.status_code == 200, r.text
        return str(r.json()["explain"]["scorer"])

    with Server(create_app(following, embedder=embedder)) as other, httpx.Client(base_url=other.url) as client:
        assert "tiny-fleet" not in scorer(client)
        r = api.admin.post("/admin/model/reload", json={"model": "tiny-fleet"})  # sent to the first process
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 15
        while "tiny-fleet" not in scorer(client) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scorer(client).startswith("lambdarank(model=tiny-fleet"), "the second process did not follow"
        assert scorer(api.client).startswith("lambdarank(model=tiny-fleet")
    # a process that starts after the reload serves the fleet's model from its first request
    late = api.settings.model_copy(update={"ranking": RankingSettings(model="default", follow_every_s=0)})
    with Server(create_app(late, embedder=embedder)) as third, httpx.Client(base_url=third.url) as client:
        assert scorer(client).startswith("lambdarank(model=tiny-fleet")
    assert api.admin.post("/admin/model/reload", json={"model": "default"}).status_code == 200


def test_served_features_are_logged_with_the_query_id(api: Api) -> None:
    got = api.search("space war")
    deadline = time.monotonic() + 10
    log_dir = api.data_dir / "feature-log"
    while time.monotonic() < deadline:
        text = "".join(p.read_text() for p in log_dir.glob("*.jsonl")) if log_dir.exists() else ""
        if got["query_id"] in text:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the query's features were not logged")
    day = datetime.now(UTC).date().isoformat()
    assert (log_dir / f"{day}.jsonl").exists()

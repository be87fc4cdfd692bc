"""Recommendations through a real HTTP server, with a neutral filter: the same filter form as /v1/search holds
for a user with history and for cold start, and a bad filter is a 422 naming the field. Real films with real
embeddings; interactions posted over HTTP; the refresh the worker runs periodically, run here once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from indexer.runtime import IndexerRuntime
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.core.domain import Item
from services.core.embedding import SentenceTransformerEmbedder
from services.core.engines.base import Document
from services.core.settings import OpenSearchSettings
from services.recs.settings import RankerSettings, RecsSettings
from tests.support.index import drop_opensearch_indices, live_index
from tests.support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TASTES = ("Action", "Comedy", "Drama", "Sci-Fi")
COMEDY = {"term": {"categories": "Comedy"}}


@dataclass
class Live:
    client: httpx.Client
    items: dict[str, Item]

    def recommend(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/v1/recommendations", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def history(items: list[Item]) -> list[dict[str, Any]]:
    """60 users, each with one favourite genre, clicking 8 of its films; `fan` clicked 5 action films that are
    not comedies (so the interaction models push action films at her)."""
    rng = np.random.default_rng(21)
    by_genre = {g: [i.id for i in items if g in i.categories] for g in TASTES}
    out = []
    for u in range(60):
        pool = by_genre[TASTES[u % len(TASTES)]]
        out += [{"user_id": f"u{u}", "item_id": pool[n], "type": "click"} for n in rng.permutation(len(pool))[:8]]
    action_only = [i.id for i in items if "Action" in i.categories and "Comedy" not in i.categories]
    out += [{"user_id": "fan", "item_id": item, "type": "click"} for item in action_only[:5]]
    return out


@pytest.fixture(scope="module", params=["embedded", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    film_documents: list[Document],
) -> Iterator[Live]:
    alias = f"e2e-recs-{uuid.uuid4().hex[:10]}"
    extra: dict[str, Any] = {}
    if request.param == "opensearch":
        os_settings: OpenSearchSettings = request.getfixturevalue("opensearch_settings")
        extra["opensearch"] = os_settings
    recs = RecsSettings(reload_every_s=0, ranker=RankerSettings(n_estimators=20, min_child_samples=5, cutoffs=2))
    settings = ApiSettings(
        engine=request.param,
        data_dir=tmp_path_factory.mktemp("recs") / "var",
        index_alias=alias,
        recs=recs,
        **extra,
    )
    engine = live_index(settings, embedder, film_documents)  # the writer: what ingestion would do
    items = {d.item.id: d.item for d in film_documents}
    runtime = IndexerRuntime(settings)
    try:
        with (
            Server(create_app(settings, embedder=embedder)) as server,
            httpx.Client(base_url=server.url, timeout=60) as client,
        ):
            posted = history(list(items.values()))
            response = client.post("/v1/events/interactions", json={"interactions": posted})
            assert response.status_code == 202, response.text
            report = runtime.refresh_recs(only_if_changed=True)  # the worker's periodic task, once
            assert report.published and report.interactions == len(posted)
            yield Live(client, items)
    finally:
        if request.param == "opensearch":
            from services.core.engines.opensearch.interactions import OpenSearchInteractionStore

            interactions = runtime.interactions
            assert isinstance(interactions, OpenSearchInteractionStore)
            interactions.drop()
        runtime.close()
        engine.drop_alias(alias)
        engine.close()
        if request.param == "opensearch":  # and its interactions indices
            drop_opensearch_indices(os_settings.hosts[0], alias)


def categories(result: dict[str, Any]) -> list[list[str]]:
    return [r["item"]["categories"] for r in result["items"]]


def test_a_user_with_history_gets_only_items_that_pass_the_filter(live: Live) -> None:
    unfiltered = live.recommend(user_id="fan", k=10)
    assert unfiltered["mode"] == "user"
    assert any("Comedy" not in c for c in categories(unfiltered))  # her history pulls towards action films

    result = live.recommend(user_id="fan", k=10, filter=COMEDY)
    assert result["mode"] == "user" and len(result["items"]) == 10
    assert all("Comedy" in c for c in categories(result))
    assert all(r["sources"] for r in result["items"])
    narrowed = live.recommend(user_id="fan", k=10, filter={"and": [COMEDY, {"range": {"rating": {"gte": 8}}}]})
    assert narrowed["items"]
    assert all("Comedy" in r["item"]["categories"] and r["item"]["rating"] >= 8 for r in narrowed["items"])


def test_cold_start_honours_the_filter(live: Live) -> None:
    trending = live.recommend(user_id="someone-new", k=10, filter=COMEDY)
    assert trending["mode"] == "trending" and len(trending["items"]) == 10
    assert all("Comedy" in c for c in categories(trending))

    # A film nobody interacted with, as a seed: the models know nothing, so its content neighbours, in the filter.
    clicked = {e["item_id"] for e in history(list(live.items.values()))}
    fresh = next(i.id for i in live.items.values() if i.id not in clicked and "Comedy" not in i.categories)
    content = live.recommend(seed_item_ids=[fresh], k=8, filter=COMEDY)
    assert content["mode"] == "content" and len(content["items"]) == 8
    assert all("Comedy" in c for c in categories(content))
    assert "vector" in content["items"][0]["sources"] and fresh not in {r["id"] for r in content["items"]}


@pytest.mark.parametrize(
    ("flt", "field", "says"),
    [
        ({"term": {"genre": "Comedy"}}, "filter.term", "genre"),
        ({"range": {"rating": {"gte": "high"}}}, "filter.range.rating.gte", "number"),
        ({"terms": {"categories": "Comedy"}}, "filter.terms.categories", "list"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_field(live: Live, flt: dict[str, Any], field: str, says: str) -> None:
    for body in ({"user_id": "fan", "filter": flt}, {"user_id": "someone-new", "filter": flt}):
        response = live.client.post("/v1/recommendations", json=body)
        assert response.status_code == 422, response.text
        (detail,) = response.json()["detail"]
        assert detail["field"] == field and says in detail["message"]

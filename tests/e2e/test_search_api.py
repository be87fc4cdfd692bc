"""The query service end to end: a real uvicorn server on a loopback port, a real catalog (300 films) with
real embeddings, written through the engine contract; once on the embedded engine and once on OpenSearch."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.core.domain import Item
from services.core.embedding import SentenceTransformerEmbedder
from services.core.engines.base import Document, SearchEngine
from services.core.settings import OpenSearchSettings
from tests.support.index import drop_opensearch_indices, live_index
from tests.support.server import Server

pytestmark = pytest.mark.e2e

SYNTHETIC: list[dict[str, Any]] = [
    {
        "id": "syn-amelie",
        "title": "Amélie ☕ 東京物語 🎬",
        "body": "A whimsical café in Montmartre",
        "categories": ["Comedy"],
        "popularity": 5.0,
    },
    {
        "id": "syn-rtl",
        "title": "שלום עולם مرحبا بالعالم",
        "body": "Greetings in two scripts",
        "categories": ["Drama"],
        "popularity": 5.0,
    },
    {
        "id": "syn-hidden",
        "title": "Interstellar Director's Cut",
        "body": "An unavailable special edition",
        "categories": ["Sci-Fi"],
        "available": False,
        "popularity": 100000.0,
    },
    {"id": "syn-dup-1", "title": "Duplicate Dawn", "brand": "Twin Studio", "categories": ["Drama"]},
    {"id": "syn-dup-2", "title": "duplicate  dawn", "brand": "Twin Studio", "categories": ["Drama"]},
    {
        "id": "syn/with/slash",
        "title": "Slashed Identity",
        "body": "An id with slashes",
        "categories": ["Mystery"],
    },
]
VICTIM = "Gravity"  # deleted by the last test; no other test depends on it


@dataclass
class Live:
    url: str
    engine: SearchEngine
    alias: str
    items: dict[str, Item]
    client: httpx.Client
    settings: ApiSettings

    def id_of(self, title: str) -> str:
        return next(i.id for i in self.items.values() if i.title == title)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def ok(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def documents(embedder: SentenceTransformerEmbedder, film_documents: list[Document]) -> list[Document]:
    """The films (shared, see conftest.py) and this module's synthetic items."""
    from tests.e2e.films import embedding_text

    items = [Item.parse(s) for s in SYNTHETIC]
    vectors = embedder.embed([embedding_text(i) for i in items])
    return film_documents + [Document(i, v) for i, v in zip(items, vectors, strict=True)]


@pytest.fixture(scope="module", params=["embedded", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    documents: list[Document],
) -> Iterator[Live]:
    alias = f"e2e-{uuid.uuid4().hex[:10]}"
    extra: dict[str, Any] = {}
    if request.param == "opensearch":
        os_settings: OpenSearchSettings = request.getfixturevalue("opensearch_settings")
        extra["opensearch"] = os_settings
    settings = ApiSettings(
        engine=request.param, data_dir=tmp_path_factory.mktemp("api") / "var", index_alias=alias, **extra
    )
    engine = live_index(settings, embedder, documents)  # the writer: what ingestion would do, through the contract
    try:
        with (
            Server(create_app(settings, embedder=embedder)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            yield Live(server.url, engine, alias, {d.item.id: d.item for d in documents}, client, settings)
    finally:
        engine.drop_alias(alias)
        engine.close()
        if request.param == "opensearch":  # and its interactions indices
            drop_opensearch_indices(os_settings.hosts[0], alias)


def ids(body: dict[str, Any]) -> list[str]:
    return [h["id"] for h in body["items"]]


# ---- search ---------------------------------------------------------------------------------------------


def test_search_ranks_the_exact_title_first_and_carries_a_query_id(live: Live) -> None:
    got = live.ok("/v1/search", q="The Dark Knight Rises")
    assert got["items"][0]["item"]["title"] == "The Dark Knight Rises"
    assert uuid.UUID(got["query_id"]) and got["total"] >= len(got["items"]) > 0
    again = live.ok("/v1/search", q="The Dark Knight Rises")
    assert again["query_id"] != got["query_id"]
    posted = live.client.post("/v1/search", json={"q": "The Dark Knight Rises", "size": 3})
    assert posted.status_code == 200 and ids(posted.json()) == ids(got)[:3]
    # the vector leg alone understands a description with none of the title's words
    semantic = live.ok("/v1/search", q="astronauts travel through a wormhole to save humanity", mode="vector")
    assert live.id_of("Interstellar") in ids(semantic)[:5]


def test_an_actor_far_down_the_alphabetical_cast_list_finds_the_film(live: Live) -> None:
    # the catalog lists casts alphabetically: Leonardo DiCaprio is Titanic's 30th name
    assert live.id_of("Titanic") in ids(live.ok("/v1/search", q="leonardo dicaprio", mode="keyword"))


@pytest.mark.parametrize(
    ("typed", "title"), [("avaatr", "Avatar"), ("frzoen", "Frozen"), ("termnator salvaton", "Terminator Salvation")]
)
def test_a_query_whose_words_are_all_misspelt_still_finds_the_title(live: Live, typed: str, title: str) -> None:
    wanted = live.id_of(title)
    for mode in ("keyword", "hybrid"):
        found = live.ok("/v1/search", q=typed, mode=mode, explain="true")
        assert wanted in ids(found)[:3], (mode, [i["item"]["title"] for i in found["items"][:5]])
        # first out of candidate generation and fusion (the shipped scorer, trained on Cranfield, may reorder)
        (item,) = [i for i in found["items"] if i["id"] == wanted]
        assert item["explain"]["fusion"]["rank"] == 1, mode
    assert live.ok("/v1/search", q="xqzvbnm", mode="keyword")["total"] == 0  # nonsense is still nothing


def test_explain_shows_every_stage(live: Live) -> None:
    got = live.ok("/v1/search", q="batman", explain="true", size=5)
    legs = {leg["name"]: leg["hits"] for leg in got["explain"]["legs"]}
    assert legs["keyword"] > 0 and legs["vector"] > 0
    assert got["explain"]["fusion"].startswith("rrf") and set(got["explain"]["timings_ms"]) >= {
        "retrieval",
        "total",
    }
    for rank, hit in enumerate(got["items"], start=1):
        e = hit["explain"]
        assert e["retrievers"] and set(e["retrievers"]) <= {"keyword", "vector"}
        # the scorer (LambdaRank) may re-order the fused list; no rule is active here
        assert e["scoring"]["rank"] == e["reranking"]["rank"] == hit["rank"] == rank and e["fusion"]["rank"] >= 1
        assert hit["score"] == e["reranking"]["score"]
    assert live.ok("/v1/search", q="batman")["explain"] is None


def test_filters_hold_in_every_leg(live: Live) -> None:
    animation = {"term": {"categories": "Animation"}}
    for mode in ("hybrid", "keyword", "vector"):
        got = live.ok(
            "/v1/search",
            q="a story about family and friendship",
            filter=json.dumps(animation),
            mode=mode,
            size=100,
            explain="true",
        )
        assert all("Animation" in h["item"]["categories"] for h in got["items"]), mode
        if mode == "vector":
            assert got["total"] == sum(1 for i in live.items.values() if "Animation" in i.categories)
    hybrid = live.ok("/v1/search", q="toy", filter=json.dumps(animation), explain="true", size=50)
    assert {leg["name"] for leg in hybrid["explain"]["legs"] if leg["hits"]} == {"keyword", "vector"}

    flt = {
        "and": [
            {"range": {"rating": {"gte": 9}}},
            {"not": {"term": {"brand": "Christopher Nolan"}}},
            {"range": {"published_at": {"gte": "2010-01-01"}}},
        ]
    }
    posted = live.client.post("/v1/search", json={"q": "dark thriller", "filter": flt, "size": 200}).json()
    assert posted["items"]
    for h in posted["items"]:
        assert h["item"]["rating"] >= 9 and h["item"]["brand"] != "Christopher Nolan"
        assert h["item"]["published_at"] >= "2010-01-01"

    suggest = live.ok("/v1/suggest", q="the", filter=json.dumps(animation), size=10)
    assert suggest["items"] and all("Animation" in i["item"]["categories"] for i in suggest["items"])
    similar = live.ok(f"/v1/items/{live.id_of('Inception')}/similar", filter=json.dumps(animation), size=5)
    assert len(similar["items"]) == 5 and all("Animation" in h["item"]["categories"] for h in similar["items"])


def test_facets_count_the_whole_result_list(live: Live) -> None:
    got = live.ok("/v1/search", q="war", facets="categories,brand", size=2)
    everything = live.ok("/v1/search", q="war", size=1000)
    assert len(got["items"]) == 2 and got["total"] == everything["total"] == len(everything["items"])
    want = Counter(c for h in everything["items"] for c in h["item"]["categories"])
    assert [(f["value"], f["count"]) for f in got["facets"]["categories"]][:3] == sorted(
        want.items(), key=lambda kv: (-kv[1], kv[0])
    )[:3]
    assert got["facets"]["brand"] and "tags" not in got["facets"]
    posted = live.client.post("/v1/search", json={"q": "war", "facets": ["tags"]}).json()
    assert set(posted["facets"]) == {"tags"}


def test_paging_and_a_page_past_the_end(live: Live) -> None:
    first = live.ok("/v1/search", q="love", size=10, page=1)
    second = live.ok("/v1/search", q="love", size=10, page=2)
    assert [h["rank"] for h in second["items"]] == list(range(11, 21))
    assert not set(ids(first)) & set(ids(second))
    past = live.ok("/v1/search", q="love", size=10, page=1000)
    assert past["items"] == [] and past["total"] == first["total"] > 0


# ---- suggest --------------------------------------------------------------------------------------------


def test_suggest_completes_a_prefix_and_forgives_typos(live: Live) -> None:
    got = live.ok("/v1/suggest", q="incep")
    assert got["items"][0]["id"] == live.id_of("Inception") and "inception" in [c["text"] for c in got["completions"]]
    assert uuid.UUID(got["query_id"])
    typo_last = live.ok("/v1/suggest", q="intersteller")  # a typo in the word being typed
    assert live.id_of("Interstellar") in [i["id"] for i in typo_last["items"]]
    assert "interstellar" in [c["text"] for c in typo_last["completions"]]
    typo_then_prefix = live.ok("/v1/suggest", q="the dark knigt ri")  # a typo in a completed word, then a prefix
    assert typo_then_prefix["items"][0]["id"] == live.id_of("The Dark Knight Rises")
    assert typo_then_prefix["completions"][0]["text"] == "the dark knight rises"


def test_suggest_finds_items_by_their_brand_and_completes_it(live: Live) -> None:
    got = live.ok("/v1/suggest", q="christopher nol", size=10)  # the film catalog's brand is its director
    found = [i["id"] for i in got["items"]]
    assert {live.id_of("Inception"), live.id_of("Interstellar")} <= set(found)
    assert all(live.items[i].brand == "Christopher Nolan" for i in found)
    assert got["completions"][0]["text"] == "christopher nolan"


def test_suggest_never_shows_unavailable_items_nor_duplicates(live: Live) -> None:
    for q in ("interst", "interstellar d", "interstellar director"):
        got = live.ok("/v1/suggest", q=q, size=20, completions=20)
        assert "syn-hidden" not in [i["id"] for i in got["items"]], q
        assert not any("director" in c["text"] for c in got["completions"]), q
    dup = live.ok("/v1/suggest", q="duplicate da", size=10)
    assert len([i for i in dup["items"] if i["id"].startswith("syn-dup")]) == 1
    assert [c["text"] for c in dup["completions"]].count("duplicate dawn") == 1


KEYSTROKES = [
    "q=incep",
    "q=the%20dark%20knigt%20ri",
    "q=intersteller&size=3&completions=1",
    "q=duplicate%20da&size=10",
    "q=am%C3%A9l",
    "q=the&filter=" + quote(json.dumps({"term": {"categories": "Animation"}})),
    "q=",
    "q=%20%20",
    "q=ab&size=51",
    "q=ab&sise=1",
    "q=ab&q=incep",
    "q=ab&filter=%7Bnot%20json",
    "q=ab&filter=" + quote(json.dumps({"exists": "colour"})),
    "size=3",
]


def _comparable(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    if response.status_code == 200:  # a fresh query id each time, and the legs' own times
        body.pop("query_id")
        for leg in body["legs"]:
            leg.pop("ms")
    return response.status_code, body


def test_suggest_keystroke_path_answers_as_the_fastapi_route(live: Live, embedder: SentenceTransformerEmbedder) -> None:
    """The same requests to a server with the keystroke path in front of FastAPI (the default) and to one with
    that path off (every request through the route): the same statuses, answers and errors, field by field.
    The suggest vector leg is off in both: whether it runs depends on each server's cache of query vectors."""
    if live.settings.engine != "embedded":
        pytest.skip("the keystroke path serves the embedded engine only (services/api/keystroke.py)")
    search = live.settings.search.model_copy(
        update={"suggest": live.settings.search.suggest.model_copy(update={"vector_min_chars": 10_000})}
    )
    on = live.settings.model_copy(update={"search": search})
    off = on.model_copy(update={"suggest_fast_path": False})
    assert on.suggest_fast_path
    with (
        Server(create_app(on, embedder=embedder)) as fast_server,
        Server(create_app(off, embedder=embedder)) as routed_server,
        httpx.Client(base_url=fast_server.url, timeout=30) as fast_client,
        httpx.Client(base_url=routed_server.url, timeout=30) as routed_client,
    ):
        statuses = set()
        for query in KEYSTROKES:
            fast = fast_client.get("/v1/suggest?" + query)
            routed = routed_client.get("/v1/suggest?" + query)
            assert fast.headers["content-type"] == routed.headers["content-type"], query
            assert _comparable(fast) == _comparable(routed), query
            statuses.add(fast.status_code)
        assert statuses == {200, 422}


def test_suggest_skips_the_vector_leg_for_two_characters(live: Live) -> None:
    short = live.ok("/v1/suggest", q="sk", size=10)
    assert short["items"] and all(i["sources"] == ["prefix"] for i in short["items"])
    assert "body" not in short["items"][0]["item"]  # light items on every keystroke
    # Longer text adds the vector leg; a first answer may go without it (its time budget), the vector then
    # lands in the cache and a retype gets it.
    for _ in range(40):
        longer = live.ok("/v1/suggest", q="space adventure", size=10)
        if any("vector" in i["sources"] for i in longer["items"]):
            break
        (vector_leg,) = [leg for leg in longer["legs"] if leg["name"] == "vector"]
        assert vector_leg["skipped"] and vector_leg["reason"] in {
            "no_query_vector",
            "over_budget",
            "vector_found_nothing",
        }
        time.sleep(0.05)
    else:
        pytest.fail("the vector leg never contributed")


# ---- similar ----------------------------------------------------------------------------------------------


def test_similar_excludes_the_item_itself(live: Live) -> None:
    seed = live.id_of("The Dark Knight")
    got = live.ok(f"/v1/items/{seed}/similar", size=10)
    assert len(got["items"]) == 10 and seed not in ids(got) and got["id"] == seed
    assert live.id_of("The Dark Knight Rises") in ids(got)[:3]
    scores = [h["score"] for h in got["items"]]
    assert scores == sorted(scores, reverse=True) and uuid.UUID(got["query_id"])
    slashed = live.ok("/v1/items/syn/with/slash/similar", size=3)
    assert slashed["id"] == "syn/with/slash" and "syn/with/slash" not in ids(slashed)


# ---- unicode and bad input ---------------------------------------------------------------------------------


def test_unicode_emoji_and_right_to_left(live: Live) -> None:
    assert ids(live.ok("/v1/search", q="Amélie ☕ 東京物語", mode="keyword"))[0] == "syn-amelie"
    assert ids(live.ok("/v1/search", q="Ame\u0301lie 東京物語", mode="keyword"))[0] == "syn-amelie"  # NFD input
    assert {"syn-amelie", live.id_of("Amélie")} <= set(ids(live.ok("/v1/search", q="amélie")))
    assert "syn-rtl" in ids(live.ok("/v1/search", q="שלום", mode="keyword"))
    assert "syn-rtl" in [i["id"] for i in live.ok("/v1/suggest", q="مرحبا بال")["items"]]
    assert "syn-amelie" in [i["id"] for i in live.ok("/v1/suggest", q="amél")["items"]]
    emoji = live.ok("/v1/search", q="🎬🍿")
    assert emoji["q"] == "🎬🍿"


BAD_INPUTS: list[tuple[str, str, dict[str, Any] | str | None, int, str]] = [
    # (method, path with query string, JSON body or raw text, status, field named)
    ("GET", "/v1/search?q=", None, 422, "q"),
    ("GET", "/v1/search?q=%20%20", None, 422, "q"),
    ("GET", "/v1/search", None, 422, "q"),
    ("POST", "/v1/search", {"q": "x" * (10 * 1024 + 1)}, 422, "q"),
    ("POST", "/v1/search", {"q": "é" * 5200}, 422, "q"),  # 10,400 bytes of UTF-8
    ("GET", "/v1/search?q=a&filter=" + json.dumps({"term": {"colour": "red"}}), None, 422, "filter.term"),
    ("POST", "/v1/search", {"q": "a", "filter": {"term": {"colour": "red"}}}, 422, "filter.term"),
    ("POST", "/v1/search", {"q": "a", "filter": {"range": {"brand": {"gte": 1}}}}, 422, "filter.range.brand"),
    ("POST", "/v1/search", {"q": "a", "filter": {"term": {"price": "cheap"}}}, 422, "filter.term.price"),
    ("POST", "/v1/search", {"q": "a", "filter": ["term"]}, 422, "filter"),
    ("GET", "/v1/search?q=a&filter={not json", None, 422, "filter"),
    ("GET", "/v1/search?q=a&size=1001", None, 422, "size"),
    ("GET", "/v1/search?q=a&size=lots", None, 422, "size"),
    ("POST", "/v1/search", {"q": "a", "size": 5000}, 422, "size"),
    ("GET", "/v1/search?q=a&page=0", None, 422, "page"),
    ("GET", "/v1/search?q=a&mode=psychic", None, 422, "mode"),
    ("GET", "/v1/search?q=a&facets=colour", None, 422, "facets"),
    ("GET", "/v1/search?q=a&sise=10", None, 422, "sise"),
    ("POST", "/v1/search", '{"q": "a", "size": ', 422, "body"),
    ("POST", "/v1/search", "", 422, "body"),
    ("POST", "/v1/search", {"q": 12}, 422, "q"),
    ("GET", "/v1/suggest?q=", None, 422, "q"),
    ("GET", "/v1/suggest?q=ab&size=51", None, 422, "size"),
    ("GET", "/v1/suggest?q=ab&filter=" + json.dumps({"exists": "colour"}), None, 422, "filter.exists"),
    ("GET", "/v1/items/no-such-item/similar", None, 404, "id"),
    ("GET", "/v1/items/x/similar?size=0", None, 422, "size"),
    # numbers too large for the stores (a 500 from SQLite's integer before), misspelt fields, NaN
    (
        "POST",
        "/v1/events/interactions",
        {"user_id": "u", "item_id": "i", "type": "click", "position": 10**30},
        422,
        "position",
    ),
    (
        "POST",
        "/v1/events/interactions",
        {"user_id": "u", "item_id": "i", "type": "click", "postion": 1},
        422,
        "postion",
    ),
    ("POST", "/v1/recommendations", {"seed_items": ["film-1"]}, 422, "seed_items"),
    (
        "POST",
        "/v1/recommendations",
        {"seed_item_ids": ["f1", "f2"], "negative_item_ids": ["f2"]},
        422,
        "negative_item_ids",
    ),
    (
        "POST",
        "/v1/events/content",
        {"op": "upsert", "item": {"id": "r", "title": "t"}, "version": 10**30},
        422,
        "events.0.version",
    ),
    (
        "POST",
        "/v1/events/content",
        '{"op": "upsert", "item": {"id": "r", "title": "t", "rating": NaN}}',
        422,
        "events.0.item.rating",
    ),
    ("POST", "/v1/events/content", '{"op": "upsert", "item": {"id": "r", "price": 1e400}}', 422, "events.0.item.price"),
    ("POST", "/v1/events/content", {"op": "patch", "id": "r", "fields": {"id": "o"}}, 422, "events.0.fields.id"),
    ("GET", '/v1/search?q=a&filter={"range":{"rating":{"gte":1e400}}}', None, 422, "filter.range.rating.gte"),
    (
        "GET",
        '/v1/search?q=a&filter={"range":{"rating":{"gte":' + "9" * 400 + "}}}",
        None,
        422,
        "filter.range.rating.gte",
    ),
    ("GET", '/v1/search?q=a&filter={"range":{"rating":{"gte":' + "9" * 5000 + "}}}", None, 422, "filter"),
    (
        "POST",
        "/v1/search",
        '{"q": "a", "filter": {"range": {"rating": {"lt": -1e400}}}}',
        422,
        "filter.range.rating.lt",
    ),
    ("GET", "/v1/search?q=a&filter=" + '{"not":' * 1500 + '{"exists":"brand"}' + "}" * 1500, None, 422, "filter"),
    (
        "POST",
        "/v1/events/s3",
        {"Records": [{"eventName": 1, "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]},
        422,
        "Records.0.eventName",
    ),
    ("POST", "/v1/events/s3", {"Type": "SubscriptionConfirmation", "SubscribeURL": "http://127.0.0.1:9/"}, 422, "Type"),
    ("GET", "/admin/dlq?limit=100000000000000000000", None, 422, "limit"),
    ("GET", "/admin/dlq?limit=-1", None, 422, "limit"),
    ("POST", "/admin/model/reload", {"model_id": "nope"}, 422, "model_id"),
    ("POST", "/admin/reindex", {"modle": "x"}, 422, "modle"),
    ("POST", "/admin/reindex", {"model": "package:no_such_model_package"}, 422, "model"),  # not a failed job later
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    BAD_INPUTS,
    ids=[f"{m} {p[:40]} {f}" for m, p, _, _, f in BAD_INPUTS],
)
def test_bad_input_is_a_4xx_naming_the_field(
    live: Live, method: str, path: str, body: dict[str, Any] | str | None, status: int, field: str
) -> None:
    if isinstance(body, str):
        response = live.client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = live.client.request(method, path, json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert field in [d["field"] for d in detail], detail
    assert all(d["message"] for d in detail)


INTERACTION_ERRORS: list[tuple[Any, list[str]]] = [
    # (body, every field the answer names): one shape's errors, with the entry of a batch
    ({"user_id": "u", "item_id": "i", "type": "click", "timestamp": "yesterday"}, ["timestamp"]),
    ({"user_id": "u", "type": "click"}, ["item_id"]),
    ({"interactions": []}, ["interactions"]),
    (
        {"interactions": [{"user_id": "u", "item_id": "i", "type": "click"}, {"user_id": "u", "item_id": "i"}]},
        ["interactions.1.type"],
    ),
    (
        {
            "interactions": [
                {"user_id": "u", "item_id": "i", "type": "click"},
                {"user_id": "u", "item_id": "i", "type": "liked"},
            ]
        },
        ["interactions.1.type"],
    ),
    ({"user_id": "u", "item_id": "i", "type": "liked"}, ["type"]),
    ({"interactions": [{"user_id": "u", "item_id": "i", "type": "liked"}]}, ["interactions.0.type"]),
    ({"user_id": "u\u0000", "item_id": "i", "type": "click"}, ["user_id"]),
    (["not", "an", "object"], ["body"]),
]


@pytest.mark.parametrize(("body", "fields"), INTERACTION_ERRORS)
def test_a_bad_interaction_names_its_field_and_its_entry_and_nothing_is_stored(
    live: Live, body: Any, fields: list[str]
) -> None:
    before = live.client.post("/v1/recommendations", json={"user_id": "u", "k": 1}).json()["mode"]
    response = live.client.post("/v1/events/interactions", json=body)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["detail"]] == fields
    assert live.client.post("/v1/recommendations", json={"user_id": "u", "k": 1}).json()["mode"] == before


def test_an_s3_notification_the_storage_cannot_answer_is_a_503(live: Live) -> None:
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "nope"}, "object": {"key": "a.jsonl"}}}
    response = live.client.post("/v1/events/s3", json={"Records": [record]})
    assert response.status_code in (202, 503), response.text
    if response.status_code == 503:  # no credentials, or nothing listening: the sender retries
        assert "object storage" in response.json()["detail"][0]["message"]
    else:  # storage answered: the missing bucket is reported for that object
        assert response.json()["objects"][0]["rejected"] == ["cannot read s3://nope/a.jsonl: NoSuchBucket"]


def test_a_body_not_sent_as_json_says_so(live: Live) -> None:
    response = live.client.post("/v1/search", content=b'{"q": "alien"}', headers={"content-type": "text/plain"})
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["field"] == "body" and "content-type: application/json" in detail["message"]
    assert "text/plain" in detail["message"]


def test_openapi_documents_the_endpoints(live: Live) -> None:
    spec = live.ok("/openapi.json")
    assert {"/v1/search", "/v1/suggest", "/v1/items/{item_id}/similar"} <= set(spec["paths"])
    assert set(spec["paths"]["/v1/search"]) == {"get", "post"}
    assert "ErrorResponse" in spec["components"]["schemas"]
    # interactions read their body themselves (one shape's errors): both shapes are still documented
    shapes = spec["paths"]["/v1/events/interactions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert sorted(shapes["anyOf"][0]["properties"]) == ["interactions"]
    assert "user_id" in shapes["anyOf"][1]["properties"] and "$ref" not in json.dumps(shapes)


def test_recommendations_before_any_refresh_are_the_catalogs_most_popular(live: Live) -> None:
    # Nothing has been learnt from interactions here (no refresh ran): trending knows nothing yet.
    response = live.client.post("/v1/recommendations", json={"user_id": "first-visitor", "k": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "popular" and len(body["items"]) == 8
    assert [set(i["sources"]) for i in body["items"]] == [{"popular"}] * 8
    offered = sorted((i.popularity or 0.0 for i in live.items.values() if i.available), reverse=True)
    assert [i["item"]["popularity"] for i in body["items"]] == offered[:8]  # ids could tie
    comedy = {"term": {"categories": "Comedy"}}
    body = live.client.post("/v1/recommendations", json={"k": 3, "filter": comedy}).json()
    assert len(body["items"]) == 3 and all("Comedy" in i["item"]["categories"] for i in body["items"])
    assert body["unknown_item_ids"] == []
    typo = live.client.post("/v1/recommendations", json={"seed_item_ids": ["film-no-such"], "k": 3}).json()
    assert typo["unknown_item_ids"] == ["film-no-such"] and len(typo["items"]) == 3


# ---- deletion (last: it changes the catalog) --------------------------------------------------------------


def test_a_deleted_item_never_appears_in_any_endpoint(live: Live) -> None:
    victim = live.id_of(VICTIM)
    neighbours = [h["id"] for h in live.ok(f"/v1/items/{victim}/similar", size=5)["items"]]
    assert victim in ids(live.ok("/v1/search", q=VICTIM))
    assert victim in [i["id"] for i in live.ok("/v1/suggest", q=VICTIM[:5])["items"]]
    if live.settings.engine == "embedded":
        # the keystroke's answer is held once final (its query vector embedded in the background meanwhile)
        for _ in range(100):
            held = live.ok("/v1/suggest", q=VICTIM[:5])
            if held["cached"]:
                break
            time.sleep(0.05)
        assert held["cached"] and victim in [i["id"] for i in held["items"]]
    assert any(victim in ids(live.ok(f"/v1/items/{n}/similar", size=20)) for n in neighbours)

    assert live.engine.delete(live.alias, [victim]).succeeded == [victim]
    live.engine.refresh(live.alias)

    for mode in ("hybrid", "keyword", "vector"):
        assert victim not in ids(
            live.ok("/v1/search", q=f"{VICTIM} astronauts stranded in space", mode=mode, size=1000)
        ), mode
    for q in (VICTIM[:3], VICTIM[:5], VICTIM, "gravty "):
        got = live.ok("/v1/suggest", q=q, size=50, completions=50)
        assert victim not in [i["id"] for i in got["items"]], q
        assert VICTIM.lower() not in [c["text"] for c in got["completions"]], q
    again = live.ok("/v1/suggest", q=VICTIM[:5])  # the request whose answer was held before the delete
    assert not again["cached"] and victim not in [i["id"] for i in again["items"]]
    for n in neighbours:
        assert victim not in ids(live.ok(f"/v1/items/{n}/similar", size=50))
    for body in ({"user_id": "first-visitor", "k": 500}, {"seed_item_ids": neighbours[:2], "k": 500}):
        recommended = live.client.post("/v1/recommendations", json=body).json()["items"]
        assert recommended and victim not in [i["id"] for i in recommended], body
    gone = live.get(f"/v1/items/{victim}/similar")
    assert gone.status_code == 404 and gone.json()["detail"][0]["field"] == "id"


def test_no_live_index_is_a_503_not_a_crash(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    settings = ApiSettings(engine="embedded", data_dir=tmp_path / "var", index_alias="nothing-here")
    with Server(create_app(settings, embedder=embedder)) as server:
        response = httpx.get(f"{server.url}/v1/search", params={"q": "anything"}, timeout=30)
    assert response.status_code == 503 and response.json()["detail"][0]["type"] == "unavailable"

"""The web page in a real browser: headless Debian Chromium driven by Playwright, against a real uvicorn server
with the embedded engine and 300 films (and a third deployment of films MovieLens users rated, with their ratings
as interactions, for recommendations). Screenshots go to artifacts/screenshots/ (and, when missing or when
TRAWL_UPDATE_SCREENSHOTS=1, the README's docs/screenshots/search.png).

Needs /usr/bin/chromium (`apt-get install -y chromium`; never `playwright install`), or TRAWL_CHROMIUM naming
another binary. Without one the module is skipped, or fails when TRAWL_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.reindex import ReindexRunner
from indexer.runtime import IndexerRuntime
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.core.embedding import SentenceTransformerEmbedder
from services.core.engines import build_engine
from services.core.engines.base import Document
from services.recs import ArtefactStore, RecsRefreshJob, SQLiteInteractionStore
from services.recs.interactions import MAX_BATCH
from tests.support.index import live_index
from tests.support.server import Server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("TRAWL_ARTIFACTS_DIR", ROOT / "artifacts")) / "screenshots"
README_SCREENSHOT = ROOT / "docs" / "screenshots" / "search.png"
CHROMIUM = os.environ.get("TRAWL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "web-test-admin-key"
INGESTED_FILMS = 40  # the reindex deployment: ingested through the ledger, the source of truth and the pipeline
TIMEOUT_MS = 15_000  # per expectation; a cold query on two busy cores takes well under a second
RATED_FILMS = 60  # the recommendations deployment: the most reviewed films MovieLens users rated
INTERACTION_SOURCES = ("co_interaction", "ease", "transitions")  # the sources that learn from interactions


@dataclass
class Site:
    url: str
    titles: dict[str, str]  # title -> id
    paths: set[str]  # the API's paths, from its OpenAPI document

    def has(self, path: str) -> bool:
        return path in self.paths


@dataclass
class RatedSite(Site):
    seed: tuple[str, str]  # (id, title) of the film with the most ratings: the item whose panel is checked


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    film_documents: list[Document],
) -> Iterator[Site]:
    alias = f"web-{uuid.uuid4().hex[:10]}"
    settings = ApiSettings(
        engine="embedded",
        data_dir=tmp_path_factory.mktemp("web") / "var",
        index_alias=alias,
        admin_key=ADMIN_KEY,
    )
    engine = live_index(settings, embedder, film_documents)
    try:
        with Server(create_app(settings, embedder=embedder)) as server:
            paths = set(httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"])
            yield Site(server.url, {d.item.title: d.item.id for d in film_documents}, paths)
    finally:
        engine.drop_alias(alias)
        engine.close()


@pytest.fixture(scope="module")
def ingested_site(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Iterator[Site]:
    """A second deployment whose items came in as content events, so that a reindex can verify them against the
    source of truth. Jobs run in this process (a thread per job, as a worker would run them) instead of going
    through the broker: the Celery path is tested by tests/integration/test_reindex.py."""
    settings = ApiSettings(
        engine="embedded",
        data_dir=tmp_path_factory.mktemp("web-ingested") / "var",
        index_alias=f"web-ri-{uuid.uuid4().hex[:6]}",
        admin_key=ADMIN_KEY,
    )

    def runtime() -> IndexerRuntime:
        rt = IndexerRuntime(settings)
        rt.embedder = embedder  # the model already loaded, not a second copy
        return rt

    def run_job(job_id: str) -> None:
        def work() -> None:
            rt = runtime()
            try:
                ReindexRunner(rt).run(job_id)
            finally:
                rt.close()

        threading.Thread(target=work, name=f"reindex-{job_id}", daemon=True).start()

    app = create_app(settings, embedder=embedder)
    with Server(app) as server:
        app.state.reindex_queue = run_job
        pytest.importorskip("bokeh_sampledata", reason="the film catalog comes from the bokeh-sampledata package")
        from tests.e2e.films import load_films

        films = load_films(INGESTED_FILMS)
        events = [{"op": "upsert", "item": f.to_json()} for f in films]
        sent = httpx.post(f"{server.url}/v1/events/content", json={"events": events}, timeout=30)
        assert sent.status_code == 202 and not sent.json()["rejected"], sent.text
        rt = runtime()
        try:
            report = rt.drain(max_seconds=120)
            assert rt.ledger.live_item_count() == INGESTED_FILMS, report
        finally:
            rt.close()
        paths = set(httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"])
        yield Site(server.url, {f.title: f.id for f in films}, paths)


@pytest.fixture(scope="module")
def rated_site(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Iterator[RatedSite]:
    """A deployment as `trawl demo --limit 60` builds it, without the worker: the most reviewed films that
    MovieLens matched, their MovieLens ratings in the interaction store, and the recommendation models built
    from them by the refresh job (sources only: the ranker's training is the demo test's part)."""
    for package in ("bokeh_sampledata", "recbole"):
        pytest.importorskip(package, reason="the films and MovieLens 100k come from installed packages")
    from services.datasets.movielens_join import join_movielens
    from services.demo import choose_films
    from tests.e2e.films import embedding_text, load_films

    catalog = load_films()
    join = join_movielens(catalog)
    films = choose_films(catalog, join, RATED_FILMS)
    settings = ApiSettings(
        engine="embedded", data_dir=tmp_path_factory.mktemp("web-rated") / "var", index_alias="web-rated"
    )
    engine = build_engine(settings)
    version = engine.create_version(settings.index_alias, dimension=embedder.dimension, model_id=embedder.model_id)
    engine.point_alias(settings.index_alias, version.version)
    vectors = embedder.embed([embedding_text(f) for f in films])
    assert engine.upsert(settings.index_alias, [Document(f, v) for f, v in zip(films, vectors, strict=True)]).ok
    engine.refresh(settings.index_alias)
    ratings = join.restricted_to(f.id for f in films)
    store = SQLiteInteractionStore(settings.recs.interactions_path(settings.data_dir))  # where the API reads them
    try:
        for start in range(0, len(ratings), MAX_BATCH):
            store.record(ratings[start : start + MAX_BATCH])
        artefacts = ArtefactStore.local(settings.recs.artefacts_path(settings.data_dir))
        job = RecsRefreshJob(store, artefacts, settings.recs, engine=engine, alias=settings.index_alias)
        job.run(train_ranker=False)
    finally:
        store.close()
    by_ratings = Counter(r.item_id for r in ratings)
    seed = max(films, key=lambda f: by_ratings[f.id])
    try:
        with Server(create_app(settings, embedder=embedder)) as server:
            paths = set(httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"])
            yield RatedSite(server.url, {f.title: f.id for f in films}, paths, seed=(seed.id, seed.title))
    finally:
        engine.close()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        message = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("TRAWL_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 860},
            color_scheme="light",
            reduced_motion="reduce",
        )
        context.set_default_timeout(TIMEOUT_MS)
        sync_api.expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh tab; fails the test on an uncaught script error, and saves a screenshot when the test fails."""
    tab = browser_context.new_page()
    failures_before = request.session.testsfailed
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    # fetch() answers of 4xx are logged by Chromium as "Failed to load resource"; those are expected here
    tab.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    yield tab
    if errors or request.session.testsfailed > failures_before:
        with contextlib.suppress(Exception):
            shot(tab, f"failed-{request.node.name}")
    tab.close()
    assert not errors, errors


def shot(tab: Any, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=full_page)
    return path


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def search_box(tab: Any) -> Any:
    return tab.get_by_role("combobox", name="Search the catalog")


def results(tab: Any) -> Any:
    return tab.locator("#result-list > li")


def open_page(tab: Any, site: Site, path: str = "/") -> None:
    tab.goto(site.url + path)
    expect(tab.locator("html")).to_have_attribute("data-ready", "true")


def submit(tab: Any, text: str) -> None:
    """Type a query and press Enter: it searches at once, and no suggestion list stays open over the page."""
    search_box(tab).fill(text)
    search_box(tab).press("Enter")
    expect(tab.locator("#results")).to_have_attribute("data-q", text)
    expect(tab.get_by_role("listbox", name="Suggestions")).to_be_hidden()


def is_search(req: Any) -> bool:
    return bool(req.method == "POST" and req.url.endswith("/v1/search"))


# ---- search ------------------------------------------------------------------------------------------------


def test_typing_shows_results_debounced_with_suggestions_and_latency(page: Any, site: Site) -> None:
    open_page(page, site)
    expect(search_box(page)).to_be_focused()
    expect(page.locator("#status")).to_contain_text("Type to search 300 items")
    searches: list[dict[str, Any]] = []
    page.on("request", lambda r: searches.append(r.post_data_json) if is_search(r) else None)

    search_box(page).press_sequentially("dark knight", delay=10)
    expect(page.locator("#results")).to_have_attribute("data-q", "dark knight")
    expect(results(page).first).to_contain_text("The Dark Knight")
    expect(page.locator("#status")).to_contain_text("results for “dark knight”")
    # debounced: far fewer searches than keystrokes, and the last one is for the whole text
    assert 1 <= len(searches) <= 5, [s["q"] for s in searches]
    assert searches[-1]["q"] == "dark knight" and searches[-1]["facets"] == ["categories", "brand", "tags"]

    suggestions = page.get_by_role("listbox", name="Suggestions")
    expect(suggestions).to_be_visible()
    expect(suggestions.get_by_role("option").filter(has_text="The Dark Knight").first).to_be_visible()
    expect(page.locator("#facet-groups .facet-value").first).to_be_visible()
    expect(page.locator("#latency li").filter(has_text="search").first).to_be_visible()
    expect(page.locator("#latency li").filter(has_text="suggest").first).to_be_visible()
    shot(page, "01-typing")


def test_a_stale_answer_never_replaces_a_newer_one(page: Any, site: Site) -> None:
    open_page(page, site)
    held: list[Any] = []

    def hold_batman(route: Any) -> None:
        body = route.request.post_data_json or {}
        if body.get("q") == "batman" and not held:
            held.append(route)  # answered only after the newer query's results are on screen
        else:
            route.continue_()

    page.route("**/v1/search", hold_batman)
    with page.expect_request(lambda r: is_search(r) and r.post_data_json["q"] == "batman"):
        search_box(page).fill("batman")
    search_box(page).fill("inception")
    expect(page.locator("#results")).to_have_attribute("data-q", "inception")
    expect(results(page).first).to_contain_text("Inception")
    assert len(held) == 1
    with contextlib.suppress(Exception):  # the browser has aborted it: nothing to deliver, or a late answer
        held[0].continue_()
    page.wait_for_timeout(400)
    expect(page.locator("#results")).to_have_attribute("data-q", "inception")
    expect(results(page).first).to_contain_text("Inception")
    page.unroute("**/v1/search")


def test_a_typo_still_finds_the_film(page: Any, site: Site) -> None:
    open_page(page, site)
    search_box(page).press_sequentially("intersteller", delay=20)
    expect(page.locator("#results")).to_have_attribute("data-q", "intersteller")
    expect(results(page).filter(has_text="Interstellar")).to_have_count(1)  # on the first page of results
    items = page.get_by_role("listbox", name="Suggestions").locator('[data-kind="item"]')
    expect(items.first).to_contain_text("Interstellar")  # and the first item suggested
    shot(page, "02-typo")


def test_suggestions_work_with_the_keyboard(page: Any, site: Site) -> None:
    open_page(page, site)
    page.locator("body").click(position={"x": 5, "y": 400})
    page.keyboard.press("/")  # back to the search field from anywhere
    expect(search_box(page)).to_be_focused()
    page.keyboard.type("incep", delay=20)
    listbox = page.get_by_role("listbox", name="Suggestions")
    expect(listbox).to_be_visible()
    expect(search_box(page)).to_have_attribute("aria-expanded", "true")
    options = listbox.get_by_role("option")
    count = options.count()
    assert count >= 2

    page.keyboard.press("ArrowDown")
    expect(options.nth(0)).to_have_attribute("aria-selected", "true")
    expect(search_box(page)).to_have_attribute("aria-activedescendant", "suggestion-0")
    page.keyboard.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    expect(options.nth(0)).to_have_attribute("aria-selected", "false")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # wraps to the last
    expect(options.nth(count - 1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowDown")  # and back to the first
    chosen = options.nth(0).inner_text().strip(" ⌕▸\n")
    page.keyboard.press("Enter")
    expect(listbox).to_be_hidden()
    expect(search_box(page)).to_have_attribute("aria-expanded", "false")
    expect(search_box(page)).to_have_value(re.compile(re.escape(chosen.split(" (")[0]), re.IGNORECASE))
    expect(results(page).first).to_contain_text("Inception")

    page.keyboard.press("Control+a")
    page.keyboard.type("dark kn", delay=20)
    expect(listbox).to_be_visible()
    page.keyboard.press("Escape")
    expect(listbox).to_be_hidden()
    page.keyboard.press("Escape")  # a second Escape clears the field
    expect(search_box(page)).to_have_value("")
    expect(results(page)).to_have_count(0)


def test_facets_add_neutral_filters(page: Any, site: Site) -> None:
    open_page(page, site)
    submit(page, "war")
    drama = page.locator('#facet-groups .facet-value[data-field="categories"][data-value="Drama"]')
    expect(drama).to_have_attribute("aria-pressed", "false")
    with page.expect_request(is_search) as sent:
        drama.click()
    assert sent.value.post_data_json["filter"] == {"term": {"categories": "Drama"}}
    expect(drama).to_have_attribute("aria-pressed", "true")
    expect(drama).to_be_focused()  # the list re-rendered; the keyboard stays where it was
    chip = page.get_by_role("button", name="Remove filter Categories: Drama")
    expect(chip).to_be_visible()
    expect(page.locator("#status")).to_contain_text("with 1 filter")
    for text in results(page).all_inner_texts():
        assert "Drama" in text, text

    brand = page.locator('#facet-groups .facet-value[data-field="brand"]').first
    brand_name = brand.get_attribute("data-value")
    with page.expect_request(is_search) as sent:
        brand.press("Enter")  # the keyboard works as well as the mouse
    assert sent.value.post_data_json["filter"] == {
        "and": [{"term": {"categories": "Drama"}}, {"term": {"brand": brand_name}}]
    }
    expect(page.locator("#status")).to_contain_text("with 2 filters")
    for text in results(page).all_inner_texts():
        assert brand_name in text and "Drama" in text, text
    shot(page, "03-facets")

    with page.expect_request(is_search) as sent:
        page.get_by_role("button", name="Clear all").click()
    assert "filter" not in sent.value.post_data_json
    expect(page.locator("#active-filters")).to_be_hidden()


# ---- item details -------------------------------------------------------------------------------------------


def test_a_click_opens_similar_items_and_is_reported(page: Any, site: Site) -> None:
    open_page(page, site)
    clicks: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: clicks.append(r.post_data_json) if r.url.endswith("/v1/events/interactions") else None,
    )
    submit(page, "the dark knight")
    first = results(page).first
    expect(first).to_contain_text("The Dark Knight")
    title = first.locator("h3 button")
    title_text = title.inner_text()
    with page.expect_request(lambda r: r.url.endswith("/v1/events/interactions")) as click:
        title.click()
    sent = click.value.post_data_json
    user_id = page.evaluate("localStorage.getItem('trawl.user_id')")
    assert sent["user_id"] == user_id and user_id.startswith("web-")
    assert sent["item_id"] == site.titles[title_text] and sent["type"] == "click" and sent["position"] == 1
    assert uuid.UUID(sent["query_id"])
    assert set(sent) == {"user_id", "item_id", "type", "query_id", "position"}

    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(page.locator("#detail-title")).to_be_focused()
    expect(page.locator("#detail-title")).to_contain_text(title_text)
    expect(first).to_have_attribute("aria-current", "true")
    similar = page.locator("#similar-list > li")
    expect(similar.first).to_be_visible()
    assert similar.count() == 8
    expect(similar.filter(has_text="The Dark Knight Rises")).to_have_count(1)
    assert title_text not in [t.split(" (")[0] for t in similar.locator(".mini-title").all_inner_texts()]

    # "more like this": the recommendations endpoint's answer as it is, or says it is unavailable; never made up
    recs_status = page.locator("#recs-status")
    if site.has("/v1/recommendations"):
        expect(page.locator("#recs")).to_have_attribute("aria-busy", "false")
    else:
        expect(recs_status).to_have_text("Recommendations unavailable.")
        expect(page.locator("#recs-list > li")).to_have_count(0)
    page.mouse.move(0, 0)
    shot(page, "04-similar", full_page=True)
    if os.environ.get("TRAWL_UPDATE_SCREENSHOTS") == "1" or not README_SCREENSHOT.exists():
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOT), full_page=True)

    # a similar item opens in turn (and is reported with the similar answer's query id)
    rises = similar.filter(has_text="The Dark Knight Rises").locator("button")
    rises.click()
    expect(page.locator("#detail-title")).to_contain_text("The Dark Knight Rises")
    expect(page.locator("#detail")).to_have_attribute("data-id", site.titles["The Dark Knight Rises"])
    page.wait_for_timeout(100)
    assert clicks[-1]["item_id"] == site.titles["The Dark Knight Rises"] and clicks[-1]["query_id"] != sent["query_id"]

    page.keyboard.press("Escape")  # closes the panel; the keyboard goes back to the item in the list (or the field)
    expect(detail).to_be_hidden()
    rises_in_list = results(page).filter(has_text="The Dark Knight Rises").locator("h3 button")
    expect(rises_in_list if rises_in_list.count() else search_box(page)).to_be_focused()


def test_more_like_this_shows_the_items_recommended_for_the_open_item(page: Any, rated_site: Site) -> None:
    assert isinstance(rated_site, RatedSite)
    seed_id, seed_title = rated_site.seed
    open_page(page, rated_site)
    submit(page, seed_title)
    title = page.locator(f'#result-list > li[data-id="{seed_id}"] h3 button')
    expect(title).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/v1/recommendations")) as answered:
        title.click()
    request = answered.value.request
    assert request.post_data_json == {"seed_item_ids": [seed_id]}  # seed-based: the item open in the panel
    answer = answered.value.json()
    # recommended from the ratings (not the cold-start fallback by content), the seed itself left out
    assert answer["mode"] == "seeds", answer["mode"]
    recommended = [r["id"] for r in answer["items"]]
    assert len(recommended) >= 5 and seed_id not in recommended
    assert all(set(r["sources"]) & set(INTERACTION_SOURCES) for r in answer["items"])

    panel = page.locator("#recs")
    expect(panel).to_have_attribute("aria-busy", "false")
    expect(page.locator("#recs-status")).to_be_hidden()
    entries = page.locator("#recs-list > li")
    expect(entries).to_have_count(len(recommended))
    assert [entries.nth(i).get_attribute("data-id") for i in range(len(recommended))] == recommended  # in order
    for i, rec in enumerate(answer["items"]):
        entry = entries.nth(i)
        expect(entry.locator(".mini-title")).to_contain_text(rec["item"]["title"])
        expect(entry.locator(".mini-meta")).to_contain_text("via " + ", ".join(rec["sources"]))
    page.mouse.move(0, 0)
    entries.last.scroll_into_view_if_needed()  # the details panel scrolls on its own: show the whole list
    shot(page, "09-more-like-this")

    # a recommended film opens in turn, with its own recommendations
    first = answer["items"][0]
    with page.expect_response(lambda r: r.url.endswith("/v1/recommendations")) as again:
        entries.first.locator("button").click()
    expect(page.locator("#detail")).to_have_attribute("data-id", first["id"])
    assert again.value.request.post_data_json == {"seed_item_ids": [first["id"]]}
    expect(entries.first).not_to_have_attribute("data-id", first["id"])


def test_results_work_with_the_keyboard_only(page: Any, site: Site) -> None:
    open_page(page, site)
    page.keyboard.type("inception", delay=15)
    expect(results(page).first).to_contain_text("Inception")
    page.keyboard.press("Escape")  # close the suggestions
    page.keyboard.press("Tab")  # mode
    page.keyboard.press("Tab")  # explain
    page.keyboard.press("Tab")  # the first facet value
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("switch", name="Explain ranking")).to_be_focused()
    first_title = results(page).first.locator("h3 button")
    first_title.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-title")).to_be_focused()
    page.keyboard.press("Escape")
    expect(first_title).to_be_focused()
    outline = first_title.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline not in ("none", ""), "the focused element shows a visible focus ring"


def test_the_explain_toggle_shows_each_stage(page: Any, site: Site) -> None:
    open_page(page, site)
    submit(page, "batman")
    expect(page.locator(".explain")).to_have_count(0)
    with page.expect_request(is_search) as sent:
        page.get_by_role("switch", name="Explain ranking").check()
    assert sent.value.post_data_json["explain"] is True
    summary = page.locator("#explain-summary")
    expect(summary).to_be_visible()
    expect(summary.locator('[data-leg="keyword"]')).to_contain_text(re.compile(r"\d+ hits? in"))
    expect(summary.locator('[data-leg="vector"]')).to_contain_text(re.compile(r"\d+ hits? in"))
    expect(summary).to_contain_text("Fusion: rrf")
    hits = results(page)
    expect(hits.first.locator(".explain")).to_be_visible()
    for i in range(hits.count()):
        table = hits.nth(i).locator("table.stages")
        for stage in ("fusion", "scoring"):  # each stage shows its own score and rank (a model re-orders)
            expect(table.locator(f'tr[data-stage="{stage}"]')).to_contain_text(re.compile(r"#\d+"))
        expect(table.locator('tr[data-stage="reranking"]')).to_contain_text(f"#{i + 1}")  # the final position
        assert table.locator('tr[data-stage^="retriever-"]').count() == 2
        expect(hits.nth(i).locator(".rules")).to_be_visible()  # the rules applied, or "No rules applied."
    expect(page).to_have_url(re.compile(r"explain=1"))
    shot(page, "05-explain")

    page.get_by_role("switch", name="Explain ranking").uncheck()
    expect(page.locator(".explain")).to_have_count(0)
    expect(summary).to_be_hidden()


def test_the_address_bar_keeps_the_search(page: Any, site: Site) -> None:
    open_page(page, site, "/?q=toy&filter=categories:Animation")
    expect(page.locator("#results")).to_have_attribute("data-q", "toy")
    expect(search_box(page)).to_have_value("toy")
    expect(page.get_by_role("button", name="Remove filter Categories: Animation")).to_be_visible()
    for text in results(page).all_inner_texts():
        assert "Animation" in text


# ---- admin ----------------------------------------------------------------------------------------------------

ADMIN_CARDS = {"indices": "/admin/indices", "model": "/admin/model", "dlq": "/admin/dlq", "rules": "/admin/rules"}


def test_the_admin_view_sends_the_key_and_says_what_is_not_there(page: Any, site: Site) -> None:
    open_page(page, site, "/admin.html")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    with page.expect_request(lambda r: r.url.endswith("/admin/rules")) as sent:
        page.get_by_role("button", name="Use key").click()
    assert sent.value.headers.get("x-admin-key") == ADMIN_KEY
    for card, path in ADMIN_CARDS.items():
        root = page.locator(f"#card-{card}")
        if site.has(path):
            expect(root).to_have_attribute("data-state", "ok")
        else:
            expect(root).to_have_attribute("data-state", "unavailable")
            expect(root.locator(".card-status")).to_contain_text(f"Not available: GET {path} answered 404")
    if not site.has("/admin/indices"):  # the live version still shows, from /readyz
        expect(page.locator("#card-indices .card-body")).to_contain_text("web-")
    page.reload()
    expect(page.locator("#key-state")).to_have_text("A key is set.")  # kept for the tab
    shot(page, "06-admin")


def test_a_reindex_shows_its_progress(page: Any, ingested_site: Site) -> None:
    site = ingested_site
    open_page(page, site, "/admin.html")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Use key").click()
    indices = page.locator("#card-indices")
    expect(indices).to_have_attribute("data-state", "ok")
    live_before = page.locator("#card-indices .live-version").inner_text()
    expect(indices.locator("tr.live")).to_contain_text(str(INGESTED_FILMS))
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/admin/reindex/" in r.url else None)

    start = page.get_by_role("button", name="Start reindex")
    start.click()
    card = page.locator("#card-reindex")
    expect(card.locator(".phase")).to_have_text("done", timeout=60_000)
    expect(card.locator("progress")).to_have_attribute("max", str(INGESTED_FILMS))
    expect(card.locator(".progress-text")).to_contain_text(f"{INGESTED_FILMS} / {INGESTED_FILMS} · 100%")
    expect(card.locator(".job-message")).to_contain_text("alias now on v2")
    expect(card).to_have_attribute("data-state", "ok")
    expect(start).to_be_enabled()
    assert polls, "the page followed the job"
    expect(page.locator("#card-indices .live-version")).not_to_have_text(live_before)
    expect(indices.locator("tr.live")).to_contain_text(str(INGESTED_FILMS))
    expect(indices).to_contain_text("Recent jobs")
    shot(page, "07-reindex-done")


def test_reindex_progress_shows_each_phase(page: Any, site: Site) -> None:
    """Rate, ETA and the phases in between, which a real job over a few items passes too fast to see: the page
    against answers in the shape of routes/admin_indices.py's JobOut, given by the browser."""
    base = {
        "job_id": "job-1",
        "alias": "items",
        "kind": "reindex",
        "model_id": "m",
        "model_spec": "m",
        "from_version": 1,
        "to_version": 2,
        "embedded": 0,
        "message": "",
        "errors": [],
        "cancel_requested": False,
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    steps = iter(
        [
            {**base, "phase": "backfill", "done": 0, "total": 300, "rate_per_s": None, "eta_s": None},
            {**base, "phase": "backfill", "done": 120, "total": 300, "rate_per_s": 2400.0, "eta_s": 0.075},
            {**base, "phase": "verify", "done": 300, "total": 300, "rate_per_s": None, "eta_s": None},
            {**base, "phase": "done", "done": 300, "total": 300, "rate_per_s": None, "eta_s": None},
        ]
    )
    last: dict[str, Any] = {}
    keys: list[str | None] = []

    def reindex(route: Any) -> None:
        keys.append(route.request.headers.get("x-admin-key"))
        if route.request.method == "POST":
            body = {**base, "phase": "pending", "done": 0, "total": 0, "rate_per_s": None, "eta_s": None}
            route.fulfill(status=202, content_type="application/json", body=json.dumps(body))
            return
        last.update(next(steps, last))
        route.fulfill(status=200, content_type="application/json", body=json.dumps(last))

    pattern = re.compile(r".*/admin/reindex(/job-1)?$")
    page.route(pattern, reindex)
    open_page(page, site, "/admin.html")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Use key").click()
    start = page.get_by_role("button", name="Start reindex")
    start.click()
    card = page.locator("#card-reindex")
    expect(start).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(card.locator(".progress-text")).to_contain_text("120 / 300 · 40% · 2,400 items/s · ETA 1 s")
    expect(card).to_contain_text("v1 → v2")
    shot(page, "08-reindex-progress")
    expect(card.locator(".phase")).to_have_text("verify")
    expect(card.locator(".phase")).to_have_text("done")
    expect(card.locator(".progress-text")).to_contain_text("300 / 300 · 100%")
    expect(start).to_be_enabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    assert keys and set(keys) == {ADMIN_KEY}
    page.unroute(pattern)

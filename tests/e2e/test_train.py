"""`train()`, the entry point of `trawl train`, end to end on the embedded engine with real embeddings: from
judgments (queries run through the live index's candidate generation) and from interactions joined with the
feature log that a real server wrote. The model it publishes as current is the one a fresh API then serves."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import pytest
from typer.testing import CliRunner

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.cli import app as cli
from services.core.embedding import SentenceTransformerEmbedder
from services.core.engines.base import Document
from services.ranking.feature_log import build_sink, read_records
from services.ranking.registry import build_registry
from services.ranking.settings import RankingSettings
from services.ranking.train import known_item_queries, train
from tests.support.index import live_index
from tests.support.server import Server

pytestmark = pytest.mark.e2e
KNOWN_ITEMS = 60


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder, film_documents: list[Document]
) -> Iterator[ApiSettings]:
    alias = f"train-{uuid.uuid4().hex[:8]}"
    settings = ApiSettings(
        engine="embedded",
        data_dir=tmp_path_factory.mktemp("train") / "var",
        index_alias=alias,
        ranking=RankingSettings(model="current", feature_log={"flush_every_s": 0.1}),
    )
    engine = live_index(settings, embedder, film_documents)
    try:
        yield settings
    finally:
        engine.drop_alias(alias)
        engine.close()


@pytest.fixture(scope="module")
def judged(film_documents: list[Document]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Known-item queries: a film's title, that film the one relevant answer."""
    pairs = [(d.item.id, d.item.title) for d in film_documents]
    queries, qrels = known_item_queries(pairs, KNOWN_ITEMS, seed=1)
    return queries, qrels


def write_judgments(judged: tuple[dict[str, str], dict[str, dict[str, int]]], folder: Path) -> None:
    queries, qrels = judged
    (folder / "queries.tsv").write_text("".join(f"{k}\t{t}\n" for k, t in queries.items()))
    lines = [f"{k} 0 {d} {g}\n" for k, docs in qrels.items() for d, g in docs.items()]
    (folder / "qrels.txt").write_text("".join(lines))


def _scorer(client: httpx.Client, q: str) -> str:
    got = client.get("/v1/search", params={"q": q, "explain": "true", "size": 3})
    assert got.status_code == 200, got.text
    scorer: str = got.json()["explain"]["scorer"]
    return scorer


def test_training_from_judgments_publishes_the_model_the_api_then_serves(
    settings: ApiSettings,
    embedder: SentenceTransformerEmbedder,
    judged: tuple[dict[str, str], dict[str, dict[str, int]]],
    tmp_path: Path,
) -> None:
    write_judgments(judged, tmp_path)
    queries, _ = judged
    out = tmp_path / "out"
    trained = train(
        settings,
        qrels=tmp_path / "qrels.txt",
        queries=tmp_path / "queries.tsv",
        folds=3,
        rounds=40,
        make_current=True,
        output=out,
    )
    card = trained.card
    assert card.training.source == "qrels:qrels.txt"
    assert card.training.queries == len(queries)  # every title finds candidates, itself among them
    assert card.training.relevant_rows == len(queries)
    # an exact title asks for that film: the model ranks it first for most held-out queries, as the fused
    # order does (training must not undo what retrieval already gets right)
    assert card.metrics["cv3_ndcg@10"] >= 0.8, card.metrics
    assert card.metrics["cv3_ndcg@10"] >= card.metrics["cv3_fused_ndcg@10"] - 0.05, card.metrics

    booster = lgb.Booster(model_file=str(out / "model.txt"))
    assert booster.num_feature() == len(card.features)
    assert json.loads((out / "card.json").read_text())["model_id"] == card.model_id

    registry = build_registry(settings, settings.ranking)
    assert registry.current_id() == card.model_id
    assert registry.load(card.model_id).card.model_id == card.model_id
    with Server(create_app(settings, embedder=embedder)) as server, httpx.Client(base_url=server.url) as client:
        assert _scorer(client, "batman").startswith(f"lambdarank(model={card.model_id}")


def test_training_from_interactions_joins_the_feature_log_a_server_wrote(
    settings: ApiSettings,
    embedder: SentenceTransformerEmbedder,
    judged: tuple[dict[str, str], dict[str, dict[str, int]]],
    tmp_path: Path,
) -> None:
    queries, qrels = judged
    clicks: list[dict[str, Any]] = []
    with Server(create_app(settings, embedder=embedder)) as server, httpx.Client(base_url=server.url) as client:
        for key, text in queries.items():
            got = client.get("/v1/search", params={"q": text, "size": 10})
            assert got.status_code == 200, got.text
            body = got.json()
            (wanted,) = qrels[key]
            shown = [h["id"] for h in body["items"]]
            if wanted in shown:  # a user clicks the film they asked for, when the page shows it
                clicks.append({"query_id": body["query_id"], "item_id": wanted, "type": "click"})
    assert len(clicks) >= KNOWN_ITEMS * 0.8

    sink = build_sink(settings, settings.ranking.feature_log)
    records: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    wanted_ids = {c["query_id"] for c in clicks}
    while not wanted_ids <= records.keys() and time.monotonic() < deadline:
        records = {r["query_id"]: r for r in read_records(sink)}
        time.sleep(0.2)
    assert wanted_ids <= records.keys(), "the server's feature log holds every clicked query"

    path = tmp_path / "clicks.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in clicks))
    trained = train(settings, interactions=path, folds=0, rounds=20, publish=False, output=tmp_path / "out")
    info = trained.card.training
    assert info.source == "interactions:clicks.jsonl"
    assert info.queries == len(clicks)
    assert info.relevant_rows == len(clicks)  # one clicked film per query, found among its logged candidates
    assert trained.card.features == records[clicks[0]["query_id"]]["features"]  # the logged features, in order
    assert lgb.Booster(model_str=trained.model_text).num_feature() == len(trained.card.features)
    # publish=False leaves the registry as the first test left it
    assert build_registry(settings, settings.ranking).current_id() != trained.card.model_id


def test_training_with_nothing_to_learn_from_says_so(settings: ApiSettings, tmp_path: Path) -> None:
    path = tmp_path / "clicks.jsonl"
    path.write_text(json.dumps({"query_id": "never-logged", "item_id": "film-x", "type": "click"}) + "\n")
    with pytest.raises(ValueError, match="no training rows"):
        train(settings, interactions=path, folds=0, publish=False)
    with pytest.raises(ValueError, match="give qrels and queries"):
        train(settings, qrels=path, publish=False)


def test_the_cli_trains_and_publishes_without_making_it_current(
    settings: ApiSettings, judged: tuple[dict[str, str], dict[str, dict[str, int]]], tmp_path: Path
) -> None:
    write_judgments(judged, tmp_path)
    env = {
        "TRAWL_ENGINE": "embedded",
        "TRAWL_DATA_DIR": str(settings.data_dir),
        "TRAWL_INDEX_ALIAS": settings.index_alias,
    }
    registry = build_registry(settings, settings.ranking)
    before = registry.current_id()
    args = ["train", "--qrels", str(tmp_path / "qrels.txt"), "--queries", str(tmp_path / "queries.tsv")]
    result = CliRunner().invoke(cli, [*args, "--folds", "2", "--json"], env=env)
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["training"]["queries"] == KNOWN_ITEMS and "cv2_ndcg@10" in card["metrics"]
    assert card["model_id"] in {c.model_id for c in registry.cards()}
    assert registry.current_id() == before  # published, not made current without --make-current
    missing = CliRunner().invoke(cli, ["train"], env=env)
    assert missing.exit_code != 0 and "--qrels" in missing.output

"""The suggest answer's JSON is written from plain data (`SuggestResponse.json_of`), not through the models: it
must still be exactly what the response model documents and would have written itself."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

from services.api.schemas.suggest import SuggestResponse
from services.core.domain import Item
from services.search.suggest import Completion, SuggestedItem, SuggestResult
from services.search.types import LegReport

FULL = Item.parse(
    {
        "id": "film-é-1",
        "title": "Amélie — «ça» 🎬",
        "body": "never sent on a keystroke",
        "tags": ["French", "romance"],
        "categories": ["Comedy"],
        "brand": "Jean-Pierre Jeunet",
        "price": 9.5,
        "rating": 8.3,
        "popularity": 1234.0,
        "published_at": datetime(2001, 4, 25, 12, 30, tzinfo=UTC),
        "attributes": {"runtime": 122, "colour": True, "languages": ["fr", "en"], "seen": datetime(2020, 1, 2)},
    }
)
BARE = Item.parse({"id": "film-2", "title": "Heat"})
RESULT = SuggestResult(
    "amé",
    [Completion("amélie", 1.15), Completion("heat", 0.3)],
    [SuggestedItem(FULL.id, FULL, 1.15, ("prefix", "vector")), SuggestedItem(BARE.id, BARE, 0.3, ("fuzzy",))],
    (
        LegReport("prefix", 2, 0.412),
        LegReport("vector", 0, 0.0, "query vector not cached yet (embedding it)", "no_query_vector"),
    ),
    "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
)


def by_the_model(result: SuggestResult) -> dict[str, object]:
    """What the models write when each level is built and validated on its own."""
    response = SuggestResponse.model_validate(
        {
            "query_id": result.query_id,
            "q": result.text,
            "completions": [{"text": c.text, "score": c.score} for c in result.completions],
            "items": [
                {"id": i.id, "score": i.score, "sources": list(i.sources), "item": i.item.model_dump()}
                for i in result.items
            ],
            "legs": [asdict(leg) for leg in result.legs],
        }
    )
    return json.loads(response.model_dump_json())


def test_the_written_answer_is_what_the_model_writes() -> None:
    written = json.loads(SuggestResponse.json_of(RESULT))
    assert written == by_the_model(RESULT)
    item = written["items"][0]["item"]
    assert "body" not in item and "version" not in item and "available" not in item
    assert item["published_at"] == "2001-04-25T12:30:00Z"
    assert item["attributes"]["languages"] == ["fr", "en"]


def test_the_written_answer_validates_as_the_response_model() -> None:
    model = SuggestResponse.model_validate_json(SuggestResponse.json_of(RESULT))
    assert str(model.query_id) == RESULT.query_id
    assert [i.item.title for i in model.items] == ["Amélie — «ça» 🎬", "Heat"]
    assert model.legs[1].skipped == "query vector not cached yet (embedding it)"
    assert (model.legs[0].reason, model.legs[1].reason) == (None, "no_query_vector")

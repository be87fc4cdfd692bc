"""The keystroke path in front of FastAPI: which requests it answers itself and which it hands on untouched.

The suggester here is a fake that records its calls (the answers' content is the real suggester's business,
tested end to end, where the same requests also go through the FastAPI route; see test_search_api.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import anyio
import pytest

from services.api.keystroke import KeystrokePath
from services.api.settings import ApiSettings
from services.core.domain import Item
from services.core.errors import ValidationError
from services.core.filters import Term
from services.search.suggest import Completion, SuggestedItem, SuggestResult
from services.search.types import LegReport


class RecordingSuggester:
    """A fake suggester: records each call, answers one item, or raises what it was given."""

    def __init__(self, raises: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.raises = raises

    def run(self, text: str, **kwargs: Any) -> SuggestResult:
        self.calls.append({"text": text, **kwargs})
        if self.raises is not None:
            raise self.raises
        item = Item.parse({"id": "film-1", "title": "Heat", "popularity": 3.0})
        return SuggestResult(
            text,
            [Completion("heat", 1.0)],
            [SuggestedItem(item.id, item, 1.0, ("prefix",))],
            (LegReport("prefix", 1, 0.4),),
            "0b6e9d5e-3c1f-4a43-9d43-7d1c2f1f0a11",
        )


class FakeLive:
    def __init__(self, suggester: RecordingSuggester, fresh: bool = True) -> None:
        self._services = SimpleNamespace(suggester=suggester)
        self._fresh = fresh

    def fresh(self) -> Any:
        return self._services if self._fresh else None


def call(
    path: str,
    query: str = "",
    *,
    method: str = "GET",
    suggester: RecordingSuggester | None = None,
    fresh: bool = True,
    scope_type: str = "http",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One request through the middleware: (messages it sent itself, scopes it handed on)."""
    handed_on: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope)

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    state = SimpleNamespace(
        settings=ApiSettings(engine="embedded"), live_search=FakeLive(suggester or RecordingSuggester(), fresh)
    )
    scope = {
        "type": scope_type,
        "method": method,
        "path": path,
        "query_string": query.encode("latin-1"),
        "app": SimpleNamespace(state=state),
    }
    anyio.run(KeystrokePath(inner), scope, receive, send)
    return sent, handed_on


def test_a_well_formed_keystroke_is_answered_in_front_of_fastapi() -> None:
    suggester = RecordingSuggester()
    sent, handed_on = call("/v1/suggest", "q=" + quote("hea t") + "&size=3&completions=0", suggester=suggester)
    assert not handed_on
    start, body = sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    answer = json.loads(body["body"])
    assert answer["q"] == "hea t" and [i["id"] for i in answer["items"]] == ["film-1"]
    assert answer["completions"] == [{"text": "heat", "score": 1.0}]
    assert suggester.calls == [{"text": "hea t", "size": 3, "completions": 0, "filter": None}]


def test_its_filter_reaches_the_suggester_typed() -> None:
    suggester = RecordingSuggester()
    flt = json.dumps({"term": {"categories": "Drama"}})
    _, handed_on = call("/v1/suggest", "q=he&filter=" + quote(flt), suggester=suggester)
    assert not handed_on
    assert suggester.calls[0]["filter"] == Term("categories", "Drama")


@pytest.mark.parametrize(
    ("path", "query", "method"),
    [
        ("/v1/suggest", "q=he", "POST"),
        ("/v1/search", "q=he", "GET"),
        ("/v1/suggest/", "q=he", "GET"),
        ("/v1/suggest", "", "GET"),  # no q
        ("/v1/suggest", "q=", "GET"),
        ("/v1/suggest", "q=he&size=51", "GET"),
        ("/v1/suggest", "q=he&size=lots", "GET"),
        ("/v1/suggest", "q=he&sise=5", "GET"),  # an unknown parameter
        ("/v1/suggest", "q=he&q=ha", "GET"),  # a repeated one
        ("/v1/suggest", "q=he&filter=%7Bnot%20json", "GET"),
        ("/v1/suggest", "q=he&filter=" + quote(json.dumps({"term": {"colour": "red"}})), "GET"),
        ("/v1/suggest", "q=" + "x" * (10 * 1024 + 1), "GET"),
    ],
)
def test_anything_else_goes_on_to_fastapi_untouched(path: str, query: str, method: str) -> None:
    suggester = RecordingSuggester()
    sent, handed_on = call(path, query, method=method, suggester=suggester)
    assert not sent and len(handed_on) == 1
    assert handed_on[0]["path"] == path and handed_on[0]["query_string"] == query.encode("latin-1")
    assert not suggester.calls  # bad input never reached the suggester


def test_the_live_version_check_and_other_scopes_go_on_to_fastapi() -> None:
    sent, handed_on = call("/v1/suggest", "q=he", fresh=False)
    assert not sent and len(handed_on) == 1
    sent, handed_on = call("/v1/suggest", "q=he", scope_type="websocket")
    assert not sent and len(handed_on) == 1


@pytest.mark.parametrize("error", [ValidationError("q", "must not be empty"), RuntimeError("engine broke")])
def test_an_error_in_the_suggester_is_answered_by_the_route(error: Exception) -> None:
    suggester = RecordingSuggester(raises=error)
    sent, handed_on = call("/v1/suggest", "q=he", suggester=suggester)
    assert suggester.calls and not sent and len(handed_on) == 1

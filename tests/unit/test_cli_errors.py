"""The CLI's answers to a user's mistakes: a clear message and exit status 2, never a Python traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.bulk import read_source
from services.cli import app
from services.core.errors import UnavailableError, ValidationError
from services.core.settings import BlobSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("not json", "not valid JSON"),
        ('{"name": "x", "action": ', "not valid JSON"),
        ("@/no/such/rule.json", "cannot read /no/such/rule.json"),
    ],
)
def test_a_rule_that_cannot_be_read_is_a_message_not_a_traceback(rule: str, says: str) -> None:
    # the API is never called: port 9 (discard) would fail differently
    result = CliRunner().invoke(app, ["rules", "add", "--api", "http://127.0.0.1:9", rule])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bulk_source_in_a_missing_bucket_names_the_location(s3_settings: BlobSettings) -> None:
    with pytest.raises(ValidationError) as missing:
        list(read_source(f"s3://{s3_settings.bucket}-absent/items/", s3_settings))
    assert missing.value.field == "location" and "NoSuchBucket" in missing.value.message


def test_a_bulk_source_where_no_storage_answers_is_unavailable(tmp_path: Path) -> None:
    nowhere = BlobSettings(
        kind="s3",
        bucket="b",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="k",
        secret_access_key="s",  # type: ignore[arg-type]
    )
    with pytest.raises(UnavailableError, match="cannot be reached"):
        list(read_source("s3://b/items/", nowhere))


def test_a_csv_cell_that_is_not_a_number_names_its_column_and_line() -> None:
    from indexer.bulk import read_text

    good, bad = read_text("id,title,price\na,Alpha,1.5\nb,Beta,cheap\n", "items.csv")
    assert good.event is not None and good.event["item"]["price"] == 1.5
    assert (bad.where, bad.event, bad.error) == ("items.csv:3", None, "column price: 'cheap' is not a number")


def test_ingest_reports_each_problem_at_its_line_in_line_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"id": "a", "title": "Alpha"}\nnot json\n{"id": "b", "price": "cheap"}\n{"id": "c"\n')
    monkeypatch.setenv("TRAWL_DATA_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(app, ["ingest", str(source), "--no-wait", "--json"])
    assert result.exit_code == 1, result.output
    import json

    problems = json.loads(result.output.strip().splitlines()[-1])["problems"]
    assert [(p["where"], p.get("field")) for p in problems] == [
        ("items.jsonl:2", None),
        ("items.jsonl:3", "item.price"),  # the field within the line, not within the chunk sent
        ("items.jsonl:4", None),
    ]


def test_a_bulk_item_with_its_own_version_is_ordered_by_it() -> None:
    from indexer.bulk import read_text

    lines = list(read_text('{"id": "a", "version": 7}\n{"id": "b"}\n{"id": "c", "version": 0}\n', "items.jsonl"))
    assert [line.event for line in lines] == [
        {"op": "upsert", "item": {"id": "a", "version": 7}, "version": 7},
        {"op": "upsert", "item": {"id": "b"}},  # no version: the server assigns one
        {"op": "upsert", "item": {"id": "c", "version": 0}},  # what Item.to_json writes for "none yet"
    ]

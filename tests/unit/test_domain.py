from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.domain import AttributeType, CatalogSchema, Item
from services.core.errors import ItemValidationError

pytestmark = pytest.mark.unit


def test_a_valid_item_parses_with_defaults() -> None:
    item = Item.parse({"id": "film-1", "title": "Alien", "tags": ["sci-fi", "sci-fi", "horror"]})
    assert item.tags == ["sci-fi", "horror"]
    assert item.available is True and item.version == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "x" * 257}, "id"),
        ({"id": "bad\x00id"}, "id"),
        ({"id": "a", "title": "é" * 513}, "title"),  # 1026 bytes
        ({"id": "a", "body": "x" * (64 * 1024 + 1)}, "body"),
        ({"id": "a", "tags": [f"t{i}" for i in range(101)]}, "tags"),
        ({"id": "a", "price": "cheap"}, "price"),
        ({"id": "a", "colour": "red"}, "colour"),
        ({"id": "a", "version": -1}, "version"),
    ],
)
def test_violations_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ItemValidationError) as info:
        Item.parse(data)
    assert info.value.field == field


def test_limits_are_inclusive() -> None:
    Item.parse({"id": "x" * 256, "title": "t" * 1024, "body": "b" * 64 * 1024, "tags": [str(i) for i in range(100)]})


def test_content_hash_ignores_version_but_not_content() -> None:
    a = Item.parse({"id": "1", "title": "Alien", "version": 1})
    assert a.content_hash == a.model_copy(update={"version": 7}).content_hash
    assert a.content_hash != a.model_copy(update={"title": "Aliens"}).content_hash


def test_naive_dates_become_utc() -> None:
    item = Item.parse({"id": "1", "published_at": "1979-05-25T00:00:00"})
    assert item.published_at == datetime(1979, 5, 25, tzinfo=UTC)


def test_declared_attribute_types_are_checked() -> None:
    schema = CatalogSchema(attributes={"runtime": AttributeType.NUMBER, "language": AttributeType.KEYWORD})
    schema.validate_item(Item.parse({"id": "1", "attributes": {"runtime": 117, "language": "en", "free": True}}))
    with pytest.raises(ItemValidationError) as info:
        schema.validate_item(Item.parse({"id": "1", "attributes": {"runtime": "long"}}))
    assert info.value.field == "attributes.runtime"
    assert "attributes.runtime" in schema.filter_fields()

"""The catalog's item, its declared schema, and the limits every engine relies on."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from services.core.errors import ItemValidationError

# The largest version an event may carry: a signed 64-bit integer, as OpenSearch's external versions and SQLite's
# integers are.
MAX_VERSION = 2**63 - 1
MAX_ID_CHARS = 256
MAX_TITLE_BYTES = 1024
MAX_BODY_BYTES = 64 * 1024
MAX_TAGS = 100
MAX_LIST_VALUE_CHARS = 256

AttributeValue = str | int | float | bool | datetime | list[str]


class AttributeType(StrEnum):
    """The types a catalog may declare for its free attributes; engines map each to a filterable field."""

    KEYWORD = "keyword"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


class FieldKind(StrEnum):
    """How a filterable field behaves: which filter operators it accepts."""

    KEYWORD = "keyword"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


# The typed attributes that catalogs share, as filterable fields.
CORE_FILTER_FIELDS: dict[str, FieldKind] = {
    "id": FieldKind.KEYWORD,
    "tags": FieldKind.KEYWORD,
    "categories": FieldKind.KEYWORD,
    "brand": FieldKind.KEYWORD,
    "price": FieldKind.NUMBER,
    "available": FieldKind.BOOLEAN,
    "rating": FieldKind.NUMBER,
    "popularity": FieldKind.NUMBER,
    "published_at": FieldKind.DATE,
}

# Fields that keyword search can read, and their default BM25 boosts.
TEXT_FIELDS = ("title", "body", "tags", "categories", "brand")
DEFAULT_FIELD_BOOSTS: dict[str, float] = {
    "title": 3.0,
    "body": 1.0,
    "tags": 1.0,
    "categories": 0.5,
    "brand": 1.0,
}


class CatalogSchema(BaseModel):
    """What a catalog declares about its free attributes; undeclared attributes are kept but not filterable."""

    model_config = ConfigDict(frozen=True)

    attributes: dict[str, AttributeType] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _names_are_plain(cls, value: dict[str, AttributeType]) -> dict[str, AttributeType]:
        for name in value:
            if not name or not name.replace("_", "").isalnum() or not name.isascii():
                raise ValueError(f"attribute name {name!r} must be ASCII letters, digits and underscores")
        return value

    def filter_fields(self) -> dict[str, FieldKind]:
        fields = dict(CORE_FILTER_FIELDS)
        for name, kind in self.attributes.items():
            fields[f"attributes.{name}"] = FieldKind(kind.value)
        return fields

    def validate_item(self, item: Item) -> None:
        for name, kind in self.attributes.items():
            if name in item.attributes:
                _check_attribute(name, kind, item.attributes[name])


def _check_attribute(name: str, kind: AttributeType, value: AttributeValue) -> None:
    ok = {
        AttributeType.KEYWORD: isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
        AttributeType.NUMBER: isinstance(value, int | float) and not isinstance(value, bool),
        AttributeType.BOOLEAN: isinstance(value, bool),
        AttributeType.DATE: isinstance(value, datetime),
    }[kind]
    if not ok:
        raise ItemValidationError(f"attributes.{name}", f"declared as {kind.value}, got {type(value).__name__}")


# Unicode's control characters (category Cc) are exactly these two ranges; a regex checks an id in one C call
# instead of a category lookup per character (every stored item read is validated again).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control_chars(text: str) -> bool:
    return _CONTROL.search(text) is not None


class Item(BaseModel):
    """One catalog item as the platform stores it. Construct with `Item.parse(...)` to get typed errors."""

    # NaN and infinities are refused (a 422 naming the field), not stored as null by the JSON writer
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str
    title: str = ""
    body: str = ""
    tags: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    brand: str | None = None
    price: float | None = None
    available: bool = True
    rating: float | None = None
    popularity: float | None = None
    published_at: datetime | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    version: int = 0

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not 1 <= len(value) <= MAX_ID_CHARS:
            raise ValueError(f"must be 1 to {MAX_ID_CHARS} characters")
        if has_control_chars(value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("title")
    @classmethod
    def _check_title(cls, value: str) -> str:
        if len(value.encode()) > MAX_TITLE_BYTES:
            raise ValueError(f"longer than {MAX_TITLE_BYTES} bytes")
        return value

    @field_validator("body")
    @classmethod
    def _check_body(cls, value: str) -> str:
        if len(value.encode()) > MAX_BODY_BYTES:
            raise ValueError(f"longer than {MAX_BODY_BYTES} bytes")
        return value

    @field_validator("tags", "categories")
    @classmethod
    def _check_lists(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_TAGS:
            raise ValueError(f"more than {MAX_TAGS} values")
        for v in value:
            if not v or len(v) > MAX_LIST_VALUE_CHARS:
                raise ValueError(f"values must be 1 to {MAX_LIST_VALUE_CHARS} characters")
        return list(dict.fromkeys(value))  # keep order, drop duplicates

    @field_validator("published_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if not 0 <= value <= MAX_VERSION:
            raise ValueError(f"must be between 0 and {MAX_VERSION}")
        return value

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Item:
        """Validate raw input; the first problem becomes an ItemValidationError naming its field."""
        try:
            return cls.model_validate(data)
        except PydanticValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "item"
            raise ItemValidationError(field, err["msg"].removeprefix("Value error, ")) from None

    @property
    def content_hash(self) -> str:
        """A digest of everything but the version: equal hashes mean nothing to re-embed or rewrite."""
        payload = self.model_dump(mode="json", exclude={"version"})
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class ItemLabel:
    """What a suggestion list reads of an item it may not show: the title and brand that tell duplicates apart
    and that completions are cut from, and whether the item is available.

    Why apart from the item: a keystroke walks up to 20 hits to find five distinct items and five distinct
    completions, and shows five. An engine that holds labels beside its index hands them over with each hit,
    so only the items shown are built.
    """

    title: str
    brand: str | None
    available: bool

    @classmethod
    def of(cls, item: Item) -> ItemLabel:
        return cls(item.title, item.brand, item.available)

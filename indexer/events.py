"""Content events as they arrive: upsert (a whole item), patch (some fields), delete. Typed, validated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from services.core.domain import MAX_VERSION, Item
from services.core.errors import ItemValidationError

MAX_EVENTS_PER_REQUEST = 1000


class UpsertEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["upsert"]
    item: dict[str, Any]
    version: int | None = Field(default=None, ge=0, le=MAX_VERSION)

    @property
    def item_id(self) -> str:
        return str(self.item.get("id", ""))

    @field_validator("item")
    @classmethod
    def _valid_item(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Item.parse(value)
        except ItemValidationError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from None
        return value


_PATCHABLE = set(Item.model_fields) - {"id", "version"}


class PatchEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["patch"]
    id: str = Field(min_length=1, max_length=256)
    fields: dict[str, Any] = Field(min_length=1)
    version: int | None = Field(default=None, ge=0, le=MAX_VERSION)

    @property
    def item_id(self) -> str:
        return self.id

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _PATCHABLE)
        if unknown:
            # "<field>: <message>": parse_events names the first such field, as it does for an item's errors
            others = f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
            raise ValueError(f"{unknown[0]}: unknown or read-only{others}; patchable: {', '.join(sorted(_PATCHABLE))}")
        try:  # types and limits of the patched fields, checked now rather than at merge time
            Item.parse({"id": "patch-check", **value})
        except ItemValidationError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from None
        return value


class DeleteEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["delete"]
    id: str = Field(min_length=1, max_length=256)
    version: int | None = Field(default=None, ge=0, le=MAX_VERSION)

    @property
    def item_id(self) -> str:
        return self.id


ContentEvent = Annotated[UpsertEvent | PatchEvent | DeleteEvent, Field(discriminator="op")]
_ADAPTER: TypeAdapter[UpsertEvent | PatchEvent | DeleteEvent] = TypeAdapter(ContentEvent)


@dataclass(frozen=True)
class EventProblem:
    index: int
    field: str
    message: str


def parse_events(
    raw: Sequence[Any],
) -> tuple[list[tuple[int, UpsertEvent | PatchEvent | DeleteEvent]], list[EventProblem]]:
    """Validate each event on its own: one bad event does not block the good ones."""
    good: list[tuple[int, UpsertEvent | PatchEvent | DeleteEvent]] = []
    bad: list[EventProblem] = []
    for i, data in enumerate(raw):
        try:
            good.append((i, _ADAPTER.validate_python(data)))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(p) for p in err["loc"] if p not in ("upsert", "patch", "delete")]
            msg = err["msg"].removeprefix("Value error, ")
            field = ".".join(loc)
            if ": " in msg and field.endswith(("item", "fields")):
                inner, msg = msg.split(": ", 1)
                field = f"{field}.{inner}"
            bad.append(EventProblem(i, f"events[{i}]" + (f".{field}" if field else ""), msg))
    return good, bad

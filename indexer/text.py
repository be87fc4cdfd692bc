"""Compose the text that is embedded for an item, from the fields a catalog chooses."""

from __future__ import annotations

from collections.abc import Sequence

from services.core.domain import Item


def compose_text(item: Item, fields: Sequence[str], max_chars: int) -> str:
    parts: list[str] = []
    for name in fields:
        value = (
            getattr(item, name, None)
            if not name.startswith("attributes.")
            else item.attributes.get(name.removeprefix("attributes."))
        )
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value not in (None, ""):
            parts.append(str(value))
    # The model reads ~256 tokens; longer text only costs time.
    return ". ".join(parts)[:max_chars]

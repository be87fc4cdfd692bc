"""Parsed items kept by row: the stored JSON of a row never changes (a write takes a new row), so an item parsed
once can be handed out again for as long as its row is current.

Why: search-as-you-type reads the same few dozen items on every keystroke of a word, and a search reads its
fused window of the same popular items query after query. Validating one item's JSON costs 7–11 µs here, 20 of
them a third of a keystroke's own work beside the prefix query. Items are frozen models, so sharing one
between requests is safe. Whether a row is still current is decided by the store read that comes before, not
here: a superseded row is never asked for again.

Who gets kept (`parse(..., at_once=...)`): a keystroke's item is kept on its first read, since the word's next
keystrokes read it again within a second. A search's candidates are mostly the catalog's long tail, read once:
kept at once, they turned the whole map over every few hundred searches, and that churn is what makes CPython's
young collections come late and large (each evicted item frees old objects, which CPython counts against the
young generation's allocations, so ~100,000 new ones piled up before a collection walked them: 100–180 ms, at
100k items; docs/benchmarks.md, "GC pauses"). A search's item is kept on its second read among the last
`maxsize` first reads (a doorkeeper, as in TinyLFU): the items that come back query after query are kept, the
rest pass through.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from services.core.domain import Item


class ParsedItems:
    """A least-recently-used map of row -> Item, bounded, thread-safe. `maxsize=0` keeps nothing."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self._maxsize = maxsize
        self._entries: OrderedDict[int, Item] = OrderedDict()
        self._seen_once: OrderedDict[int, None] = OrderedDict()  # rows read once and not kept (ints: no GC cost)
        self._lock = threading.Lock()

    def get(self, row: int) -> Item | None:
        with self._lock:
            item = self._entries.get(row)
            if item is not None:
                self._entries.move_to_end(row)
            return item

    def parse(self, row: int, source: str, *, at_once: bool = True) -> Item:
        """The item of `row` built from its stored JSON, kept for the next reader: at once, or (`at_once=False`)
        only when this row was read once already among the last `maxsize` first reads."""
        item = Item.model_validate_json(source)
        if self._maxsize:
            with self._lock:
                if not at_once and row not in self._seen_once:
                    self._seen_once[row] = None
                    if len(self._seen_once) > self._maxsize:
                        self._seen_once.popitem(last=False)
                    return item
                self._seen_once.pop(row, None)
                self._entries[row] = item
                if len(self._entries) > self._maxsize:
                    self._entries.popitem(last=False)
        return item

    def __len__(self) -> int:
        return len(self._entries)

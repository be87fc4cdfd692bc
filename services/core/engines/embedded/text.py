"""Tantivy: BM25 keyword search and typo-tolerant prefix matching for one index version.

Only `id` and `row` are stored; the item itself lives in the SQLite store. Writes replay the store's log past
the seq recorded in `text.seq`, so whoever writes next also repairs what a crashed writer left undone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tantivy
from tantivy import Occur, Query

from services.core.domain import Item
from services.core.engines.base import SUGGEST_BRAND_WEIGHT, fuzzy_distance
from services.core.engines.embedded.columns import Mask
from services.core.engines.embedded.store import DocStore

_LIST_FIELDS = ("tags", "categories")
# Below this many allowed rows a filter becomes a term-set clause; above it results are filtered afterwards.
_TERM_SET_MAX = 20_000


# Text is folded to ASCII ("Misérables" is found by "miserables", "straße" by "strasse"), as OpenSearch's
# mapping does (services/core/engines/opensearch/mapping.py). Indices made before folding keep tantivy's own
# analyzers, which they were written with; a reindex moves them over. The marker file says which an index has.
STEMMED, PREFIX = "trawl_en_folded", "trawl_folded"
_LEGACY = {STEMMED: "en_stem", PREFIX: "default"}
# The marker's text: "folded-1" indices fold but have no `brand_prefix` (suggest matches their titles only);
# "folded-2" ones have it. Each index keeps the schema it was written with; a reindex moves it to the newest.
_ANALYSIS_FILE, _WITH_BRAND = "analysis", "folded-2"


def _analyzer(stem: bool) -> tantivy.TextAnalyzer:
    # tantivy's en_stem and default, with ASCII folding after lower-casing
    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.remove_long(40))
    builder = builder.filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.ascii_fold())
    return (builder.filter(tantivy.Filter.stemmer("english")) if stem else builder).build()


def _schema(folded: bool, brand_prefix: bool) -> tantivy.Schema:
    stemmed, prefix = (STEMMED, PREFIX) if folded else (_LEGACY[STEMMED], _LEGACY[PREFIX])
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_integer_field("row", stored=True, indexed=True, fast=True)
    for name in ("title", "body", "tags", "categories", "brand"):
        sb.add_text_field(name, stored=False, tokenizer_name=stemmed)
    sb.add_text_field("title_prefix", stored=False, tokenizer_name=prefix)
    if brand_prefix:
        sb.add_text_field("brand_prefix", stored=False, tokenizer_name=prefix)
    return sb.build()


def with_brand_matches(titles: list[tuple[int, float]], brands: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Suggest's title matches and brand matches as one list by score, a brand match at SUGGEST_BRAND_WEIGHT of
    its own (added to the title's where a row matched both, as OpenSearch's query with a clause per field
    scores it); ties keep titles first."""
    scores = dict(titles)
    for row, score in brands:
        scores[row] = scores.get(row, 0.0) + SUGGEST_BRAND_WEIGHT * score
    return sorted(scores.items(), key=lambda found: -found[1])


class TextIndex:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._folder = folder
        self._seq_file = folder.parent / "text.seq"
        marker = folder / _ANALYSIS_FILE
        if not tantivy.Index.exists(str(folder)):
            marker.write_text(_WITH_BRAND)  # before the index: a crash between the two must not leave it unmarked
        # an index written before the marker existed has tantivy's analyzers (no folding)
        analysis = marker.read_text().strip() if marker.exists() else None
        self.folded = analysis is not None
        self.brand_prefix = analysis == _WITH_BRAND
        self.schema = _schema(self.folded, self.brand_prefix)
        self._index = tantivy.Index(self.schema, path=str(folder), reuse=True)
        self._prefix_analyzer = _analyzer(stem=False) if self.folded else None
        if self.folded:
            self._index.register_tokenizer(STEMMED, _analyzer(stem=True))
            self._index.register_tokenizer(PREFIX, _analyzer(stem=False))
        self._searcher = self._index.searcher()
        # The store seq this searcher is known to be current for; None: reload before the next search.
        self._current_for: int | None = None

    def applied_seq(self) -> int:
        try:
            return int(self._seq_file.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def catch_up(self, store: DocStore) -> None:
        """Replay the store's log into the index. Callers hold the version's write lock."""
        seq = self.applied_seq()
        changes = store.changes_since(seq)
        if not changes:
            return
        writer = self._index.writer(heap_size=50_000_000, num_threads=1)
        try:
            while changes:
                for rev in changes:
                    writer.delete_documents_by_term("id", rev.id)
                    if rev.source is not None:
                        writer.add_document(self._document(rev.seq, Item.model_validate_json(rev.source)))
                seq = changes[-1].seq
                changes = store.changes_since(seq)
            writer.commit()
            writer.wait_merging_threads()
        finally:
            del writer  # releases tantivy's lock file for writers in other processes
        tmp = self._seq_file.with_suffix(".tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, self._seq_file)

    def _document(self, row: int, item: Item) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_text("id", item.id)
        doc.add_integer("row", row)
        doc.add_text("title", item.title)
        doc.add_text("title_prefix", item.title)
        if item.brand and self.brand_prefix:
            doc.add_text("brand_prefix", item.brand)
        doc.add_text("body", item.body)
        for name in _LIST_FIELDS:
            for value in getattr(item, name):
                doc.add_text(name, value)
        if item.brand:
            doc.add_text("brand", item.brand)
        return doc

    def keyword_query(self, words: Sequence[str], boosts: dict[str, float]) -> Query:
        # Best field plus a share of the others, as OpenSearch's best_fields multi_match with tie_breaker 0.3.
        text = " ".join(words)
        per_field = [self._index.parse_query(text, [name], {name: weight}) for name, weight in boosts.items()]
        return Query.disjunction_max_query(per_field, tie_breaker=0.3)

    def expanded_query(
        self, words: Sequence[str], added: Sequence[tuple[str, float]], boosts: dict[str, float]
    ) -> Query:
        """The words' query, or with weighted added words (query expansion) a disjunction of it and each added
        word's own query scaled by its weight: scores add up, as in OpenSearch's bool should."""
        main = self.keyword_query(words, boosts) if words else None
        if not added:
            assert main is not None
            return main
        clauses = [(Occur.Should, main)] if main is not None else []
        clauses += [(Occur.Should, Query.boost_query(self.keyword_query([w], boosts), wt)) for w, wt in added]
        return Query.boolean_query(clauses)

    def _term(self, word: str) -> str:
        """A typed word as `title_prefix` holds it: these queries take terms, not text to analyse."""
        if self._prefix_analyzer is None:
            return word
        return "".join(self._prefix_analyzer.analyze(word)) or word

    def suggest_query(self, completed: Sequence[str], prefix: str | None, *, brand: bool = False) -> Query:
        """Every typed word in the title (typo tolerant when completed, a prefix when last), or with `brand`
        in the brand (only indices with `brand_prefix`; the engine asks it when titles leave a keystroke's
        answer short)."""
        field = "brand_prefix" if brand else "title_prefix"
        return self._all_words(field, [self._term(w) for w in completed], self._term(prefix) if prefix else prefix)

    def _all_words(self, field: str, completed: Sequence[str], prefix: str | None) -> Query:
        clauses: list[tuple[Occur, Query]] = []
        for word in completed:
            fuzzy = Query.fuzzy_term_query(
                self.schema, field, word, distance=fuzzy_distance(word), transposition_cost_one=True, prefix=False
            )
            clauses.append((Occur.Must, fuzzy))
            # An exact word scores above a corrected one.
            clauses.append((Occur.Should, Query.term_query(self.schema, field, word)))
        if prefix:
            last = Query.fuzzy_term_query(
                self.schema, field, prefix, distance=0, transposition_cost_one=True, prefix=True
            )
            clauses.append((Occur.Must, last))
        return Query.boolean_query(clauses)

    def searcher(self, store_seq: int) -> tantivy.Searcher:
        """A searcher that sees every write up to `store_seq` (the store's last seq), reloaded only when needed:
        a reload per query cost a quarter of a prefix query. `text.seq` is read before the reload and is
        written only after the commit it records, so if it has reached `store_seq` the reloaded searcher holds
        it all and stays current until the store moves; if the text index still trails (a writer between its
        store commit and its text commit), the next search reloads again."""
        if self._current_for is not None and self._current_for == store_seq:
            return self._searcher
        caught_up = self.applied_seq() >= store_seq
        self._index.reload()
        self._searcher = self._index.searcher()
        self._current_for = store_seq if caught_up else None
        return self._searcher

    def search(
        self,
        query: Query,
        k: int,
        allowed: Mask | None,
        row_is_live: Callable[[int], bool],
        store_seq: int,
    ) -> list[tuple[int, float]]:
        """Top k (row, score), keeping only allowed rows: a term-set clause when selective, else over-fetching."""
        searcher = self.searcher(store_seq)
        if allowed is not None:
            rows = np.flatnonzero(allowed)
            if len(rows) == 0:
                return []
            if len(rows) <= _TERM_SET_MAX:
                rows_q = Query.term_set_query(self.schema, "row", rows.tolist())
                query = Query.boolean_query([(Occur.Must, query), (Occur.Must, rows_q)])
                allowed = None
        limit = k
        while True:
            result = searcher.search(query, limit)
            # The row from its fast field: a stored-document fetch per hit cost more than the search itself.
            rows_found = searcher.fast_field_values("row", [address for _, address in result.hits])
            out: list[tuple[int, float]] = []
            for (score, address), found in zip(result.hits, rows_found, strict=True):
                # None only for a segment written without the column; its stored field still has the row
                row = int(found) if found is not None else int(searcher.doc(address)["row"][0])
                ok = allowed[row] if allowed is not None and row < len(allowed) else allowed is None
                if ok and row_is_live(row):
                    out.append((row, float(score)))
                    if len(out) == k:
                        return out
            if len(result.hits) < limit:
                return out
            limit *= 4

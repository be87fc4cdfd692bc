"""What only the embedded engine must prove: persistence, crash recovery, and readers beside a writer."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest

from services.core.domain import Item, ItemLabel
from services.core.engines.base import Document, Hit
from services.core.engines.embedded import EmbeddedEngine
from services.core.engines.embedded.items import ParsedItems
from services.core.filters import Term, parse_filter
from services.core.settings import CoreSettings, EmbeddedSettings
from tests.contract.suite import DIM, doc, vec

pytestmark = pytest.mark.unit


def _engine(root: Path, **embedded: int) -> EmbeddedEngine:
    return EmbeddedEngine(CoreSettings(data_dir=root, embedded=EmbeddedSettings(**embedded)))


def _fresh(root: Path) -> EmbeddedEngine:
    engine = _engine(root)
    v = engine.create_version("items", dimension=DIM, model_id="m")
    engine.point_alias("items", v.version)
    return engine


def test_a_restart_loads_the_same_state(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(i, f"Film {i} odyssey") for i in range(50)])
    engine.upsert("items", [doc(3, "Renamed voyage")])
    engine.delete("items", ["item-4"])
    before = [h.id for h in engine.vector_search("items", vec(7), k=5)]
    engine.close()

    again = _engine(tmp_path)
    assert again.count("items") == 49
    assert [h.id for h in again.vector_search("items", vec(7), k=5)] == before
    assert [h.id for h in again.keyword_search("items", "voyage", k=5)] == ["item-3"]
    assert "item-4" not in {h.id for h in again.keyword_search("items", "odyssey", k=60)}
    assert again.live_version("items").version == 1  # type: ignore[union-attr]


def test_a_crash_after_the_store_commit_is_repaired_by_the_next_write(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(1, "Before the crash")])
    index = engine._version("items", None)
    # Simulate a writer killed between its SQLite commit and its Tantivy commit.
    index.store.write([("item-2", doc(2, "Lost in the crash").item.model_dump_json(), "h", vec(2))], [])
    engine.close()

    again = _engine(tmp_path)
    assert again.count("items") == 2 and again.keyword_search("items", "lost", k=5) == []
    assert [h.id for h in again.vector_search("items", vec(2), k=1)] == ["item-2"]  # vectors replay the log
    again.upsert("items", [doc(3, "After the crash")])  # the next writer replays the text index too
    assert [h.id for h in again.keyword_search("items", "lost", k=5)] == ["item-2"]


def test_a_torn_alias_write_leaves_the_old_alias(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    (tmp_path / "embedded" / "items" / "alias.json.123.tmp").write_text('{"vers')  # a half-written temp file
    assert engine.live_version("items").version == 1  # type: ignore[union-attr]


def _write_in_another_process(root: str, start: int) -> None:
    engine = _engine(Path(root))
    engine.upsert("items", [doc(i, f"Written elsewhere {i}") for i in range(start, start + 10)])
    engine.close()


def test_another_process_sees_new_writes(tmp_path: Path) -> None:
    reader = _fresh(tmp_path)
    reader.upsert("items", [doc(1, "Local film")])
    assert reader.count("items") == 1
    # The reader's text searcher is kept between queries; each round must still see the other process's writes.
    for n, start in enumerate((100, 200), start=1):
        assert len(reader.keyword_search("items", "elsewhere", k=50)) == 10 * (n - 1)
        assert len(reader.prefix_suggest("items", "writ", k=50)) == 10 * (n - 1)
        proc = multiprocessing.get_context("spawn").Process(
            target=_write_in_another_process, args=(str(tmp_path), start)
        )
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        assert reader.count("items") == 1 + 10 * n
        assert len(reader.keyword_search("items", "elsewhere", k=50)) == 10 * n
        assert len(reader.prefix_suggest("items", "writ", k=50)) == 10 * n
        assert reader.vector_search("items", vec(start + 5), k=1)[0].id == f"item-{start + 5}"


def test_a_searcher_is_not_trusted_while_the_text_index_trails_the_store(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(1, "First film")])
    assert [h.id for h in engine.keyword_search("items", "film", k=5)] == ["item-1"]
    index = engine._version("items", None)
    # A writer between its store commit and its text commit: the reader reloads, finds the text behind...
    index.store.write([("item-2", doc(2, "Second film").item.model_dump_json(), "h", vec(2))], [])
    assert [h.id for h in engine.keyword_search("items", "film", k=5)] == ["item-1"]
    # ... and so reloads again on the next query, which finds the text commit once it has happened.
    index.text.catch_up(index.store)
    assert sorted(h.id for h in engine.keyword_search("items", "film", k=5)) == ["item-1", "item-2"]


def test_readers_keep_working_while_a_writer_writes(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(i, "Steady title") for i in range(200)])
    errors: list[BaseException] = []
    counts: list[list[int]] = [[], [], []]
    stop = threading.Event()

    def read(mine: list[int]) -> None:
        while not stop.is_set():
            try:
                mine.append(len(engine.keyword_search("items", "steady", k=500)))
                engine.vector_search("items", vec(1), k=10, filter=parse_filter({"term": {"tags": "t1"}}))
            except BaseException as exc:
                errors.append(exc)

    readers = [threading.Thread(target=read, args=(c,)) for c in counts]
    for t in readers:
        t.start()
    for start in range(200, 1200, 100):
        engine.upsert("items", [doc(i, "Steady title") for i in range(start, start + 100)])
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    for seen in counts:  # each reader saw at least the first 200 and never went backwards
        assert seen and seen == sorted(seen) and seen[0] >= 200 and seen[-1] <= 500


def test_exact_path_and_graph_path_agree_on_a_selective_filter(tmp_path: Path) -> None:
    rare = parse_filter({"term": {"tags": "t3"}})
    results = []
    for threshold in (0, 1_000_000):
        engine = _engine(tmp_path / str(threshold), exact_search_below=threshold)
        v = engine.create_version("items", dimension=DIM, model_id="m")
        engine.point_alias("items", v.version)
        engine.upsert("items", [doc(i) for i in range(700)])
        results.append([h.id for h in engine.vector_search("items", vec(9999), k=10, filter=rare)])
    assert len(results[0]) == 10 and len(set(results[0]) & set(results[1])) >= 9


def test_superseded_rows_are_compacted_away(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    for round_ in range(3):
        engine.upsert("items", [Document(doc(i).item, vec(i + 1000 * round_)) for i in range(1500)])
    index = engine._version("items", None)
    assert index.vectors.total < 3 * 1500  # rebuilt once dead rows passed the ratio
    assert engine.vector_search("items", vec(2005), k=1)[0].id == "item-5"
    assert np.isclose(engine.vector_search("items", vec(2005), k=1)[0].score, 1.0, atol=1e-4)


def _count_item_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the items built from stored JSON from now on, in order."""
    built: list[str] = []
    real = Item.model_validate_json

    def counting(data: str | bytes) -> Item:
        item = real(data)
        built.append(item.id)
        return item

    monkeypatch.setattr(Item, "model_validate_json", counting)
    return built


def test_hits_build_their_items_only_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(i, f"Film {i} odyssey") for i in range(30)])
    built = _count_item_builds(monkeypatch)
    hits = engine.keyword_search("items", "odyssey", k=20)
    assert len(hits) == 20 and built == []  # 20 hits, nothing parsed yet
    assert hits[3].item.title == f"Film {hits[3].id.removeprefix('item-')} odyssey"
    assert hits[3].item is hits[3].item  # parsed once, then kept
    assert built == [hits[3].id]
    with pytest.raises(ValueError):
        Hit("x", 1.0)  # neither an item nor a way to load it


def test_hits_carry_their_items_popularity_without_building_the_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(i, f"Voyage {i}", popularity=float(i) if i % 3 else None) for i in range(12)])
    engine.upsert("items", [doc(4, "Voyage 4", popularity=40.0)])  # a new row for item-4
    built = _count_item_builds(monkeypatch)
    engine._version("items", None).items._entries.clear()  # nothing parsed yet
    for hits in (
        engine.prefix_suggest("items", "voy", k=20),
        engine.keyword_search("items", "voyage", k=20),
        engine.vector_search("items", vec(4), k=20),
    ):
        assert len(hits) == 12
        want = {f"item-{i}": (40.0 if i == 4 else float(i) if i % 3 else None) for i in range(12)}
        assert {h.id: h.popularity for h in hits} == want
        assert built == []  # every popularity read off a column
        assert all(h.item.popularity == want[h.id] for h in hits)  # the same as the items say
        built.clear()
        engine._version("items", None).items._entries.clear()


def test_hits_carry_their_items_labels_without_building_the_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Title, brand and availability come with each hit from memory, and follow every write: this process's
    own, and another process's once this one syncs."""
    writer = _fresh(tmp_path)
    writer.upsert("items", [doc(i, f"Voyage {i}", available=i != 2) for i in range(6)])
    reader = _engine(tmp_path)  # another process: loads the labels when it opens the version
    assert len(reader.prefix_suggest("items", "voy", k=20)) == 6
    writer.upsert("items", [doc(4, "Voyage Home", brand=None, available=False)])  # a new row for item-4
    writer.delete("items", ["item-5"])
    reader.refresh("items")
    built = _count_item_builds(monkeypatch)
    for engine in (writer, reader):
        engine._version("items", None).items._entries.clear()  # nothing parsed yet
        hits = engine.prefix_suggest("items", "voy", k=20)
        labels = {h.id: h.label for h in hits}
        assert built == []  # every label read from memory
        assert labels == {
            **{f"item-{i}": ItemLabel(f"Voyage {i}", f"brand-{i}", i != 2) for i in range(4)},
            "item-4": ItemLabel("Voyage Home", None, False),
        }
        assert all(labels[h.id] == ItemLabel.of(h.item) for h in hits)  # the same as the items say
        built.clear()


def test_the_state_token_follows_another_process_writes(tmp_path: Path) -> None:
    """A reader's token changes once another process has written, without an explicit refresh: the token
    catches up with the store as a query does."""
    writer = _fresh(tmp_path)
    writer.upsert("items", [doc(1)])
    reader = _engine(tmp_path)
    before = reader.state_token("items")
    assert reader.state_token("items") == before
    writer.delete("items", ["item-1"])
    after = reader.state_token("items")
    assert after != before and after == writer.state_token("items")
    assert reader.prefix_suggest("items", "catalog", k=5) == []


def test_a_hit_without_a_given_label_reads_it_off_its_item() -> None:
    loads: list[str] = []

    def load() -> Item:
        loads.append("x")
        return Item.parse({"id": "a", "title": "Dune", "brand": "Legendary", "available": False})

    given = ItemLabel("Given", None, True)
    assert Hit("a", 1.0, load=load, label=given).label is given and loads == []
    assert Hit("a", 1.0, load=load).label == ItemLabel("Dune", "Legendary", False) and loads == ["x"]


def test_a_hit_without_a_given_popularity_reads_it_off_its_item() -> None:
    loads: list[str] = []

    def load() -> Item:
        loads.append("x")
        return Item.parse({"id": "a", "popularity": 7.0})

    assert Hit("a", 1.0, load=load, popularity=None).popularity is None and loads == []
    assert Hit("a", 1.0, load=load, popularity=3.0).popularity == 3.0 and loads == []
    assert Hit("a", 1.0, load=load).popularity == 7.0 and loads == ["x"]


def test_a_filter_that_passes_every_live_row_is_dropped_from_text_queries(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(i, f"Odyssey {i}") for i in range(20)])
    index = engine._version("items", None)
    available = Term("available", True)
    assert index.text_mask(available) is None  # every item is available: no row list for the text index
    engine.upsert("items", [doc(5, "Odyssey 5", available=False)])
    index = engine._version("items", None)
    mask = index.text_mask(available)
    assert mask is not None and int(mask.sum()) == 19
    found = engine.prefix_suggest("items", "odys", k=50, filter=available)
    assert len(found) == 19 and "item-5" not in {h.id for h in found}


def test_kept_filter_masks_follow_every_write(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(i, "Cached mask film", available=True) for i in range(10)])
    visible = Term("available", True)

    def found() -> set[str]:
        by_text = {h.id for h in engine.keyword_search("items", "film", k=20, filter=visible)}
        by_vector = {h.id for h in engine.vector_search("items", vec(1), k=20, filter=visible)}
        assert by_text == by_vector
        return by_text

    assert len(found()) == 10
    engine.upsert("items", [doc(3, "Cached mask film", available=False)])  # the same filter, another answer
    assert "item-3" not in found() and len(found()) == 9
    engine.delete("items", ["item-4"])
    assert found() == {f"item-{i}" for i in range(10)} - {"item-3", "item-4"}
    engine.upsert("items", [doc(11, "Cached mask film", available=True)])
    assert "item-11" in found()


def test_a_parsed_item_is_handed_out_again_until_its_row_is_superseded(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(1, "Kept voyage"), doc(2, "Other voyage")])
    first = {h.id: h.item for h in engine.prefix_suggest("items", "voy", k=5)}
    again = {h.id: h.item for h in engine.keyword_search("items", "voyage", k=5)}
    assert again["item-1"] is first["item-1"]  # parsed once, for the keystroke
    engine.upsert("items", [doc(1, "Renamed voyage")])  # a new row for item-1
    after = {h.id: h.item for h in engine.keyword_search("items", "voyage", k=5)}
    assert after["item-1"].title == "Renamed voyage" and after["item-2"] is first["item-2"]
    engine.delete("items", ["item-2"])
    assert [h.id for h in engine.keyword_search("items", "voyage", k=5)] == ["item-1"]


def test_a_search_keeps_a_parsed_item_on_its_second_read_a_keystroke_on_its_first(tmp_path: Path) -> None:
    engine = _fresh(tmp_path)
    engine.upsert("items", [doc(1, "Kept voyage"), doc(2, "Other voyage")])

    def read(hits: list[Hit]) -> dict[str, Item]:
        return {h.id: h.item for h in hits}

    once = read(engine.keyword_search("items", "voyage", k=5))
    twice = read(engine.vector_search("items", vec(1), k=5))
    assert twice["item-1"] is not once["item-1"]  # a search's first read passes through
    assert read(engine.keyword_search("items", "voyage", k=5))["item-1"] is twice["item-1"]  # the second kept it
    engine.upsert("items", [doc(3, "Third voyage")])
    typed = read(engine.prefix_suggest("items", "thi", k=5))
    assert read(engine.prefix_suggest("items", "thi", k=5))["item-3"] is typed["item-3"]  # kept on the first


def test_the_second_read_counts_only_among_the_last_first_reads() -> None:
    items = ParsedItems(maxsize=2)
    source = '{{"id": "item-{}", "title": "t"}}'
    for row in (1, 2, 3):
        items.parse(row, source.format(row), at_once=False)
    assert len(items) == 0  # read once each: none kept
    items.parse(1, source.format(1), at_once=False)  # row 1's first read was pushed out by rows 2 and 3
    assert items.get(1) is None
    kept = items.parse(3, source.format(3), at_once=False)
    assert items.get(3) is kept and len(items) == 1


def test_no_parsed_item_is_kept_when_the_cache_is_off(tmp_path: Path) -> None:
    engine = _engine(tmp_path, parsed_items=0)
    v = engine.create_version("items", dimension=DIM, model_id="m")
    engine.point_alias("items", v.version)
    engine.upsert("items", [doc(1, "Kept voyage")])
    (one,) = engine.keyword_search("items", "voyage", k=5)
    (two,) = engine.keyword_search("items", "voyage", k=5)
    assert one.item == two.item and one.item is not two.item


def test_a_text_index_written_before_folding_keeps_its_analyzers_and_a_new_one_folds(tmp_path: Path) -> None:
    import tantivy

    from services.core.engines.embedded.text import TextIndex, _schema

    def hits(text: TextIndex, query: str) -> int:
        searcher = text._index.searcher()
        return len(searcher.search(text._index.parse_query(query, ["title"]), 5).hits)

    def add_title(text_index: tantivy.Index) -> None:
        writer = text_index.writer(heap_size=15_000_000, num_threads=1)
        writer.add_document(tantivy.Document(id="x", row=0, title="Les Misérables", title_prefix="Les Misérables"))
        writer.commit()
        writer.wait_merging_threads()

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    add_title(tantivy.Index(_schema(folded=False, brand_prefix=False), path=str(legacy)))  # as written before folding
    opened = TextIndex(legacy)
    assert not opened.folded and not (legacy / "analysis").exists()  # opened as it was written
    assert hits(opened, "misérables") == 1 and hits(opened, "miserables") == 0  # a reindex brings folding

    fresh = TextIndex(tmp_path / "fresh")
    assert fresh.folded and (tmp_path / "fresh" / "analysis").exists()
    add_title(fresh._index)
    fresh._index.reload()
    assert hits(fresh, "miserables") == 1 and hits(fresh, "MISÉRABLES") == 1
    assert TextIndex(tmp_path / "fresh").folded  # and stays so when opened again


def test_a_text_index_written_before_brands_were_matched_suggests_from_titles_and_a_new_one_from_brands_too(
    tmp_path: Path,
) -> None:
    import tantivy

    from services.core.engines.embedded.text import TextIndex, _schema

    def suggested(text: TextIndex, typed: str, brand: bool = False) -> int:
        text._index.reload()
        return len(text._index.searcher().search(text.suggest_query([], typed, brand=brand), 5).hits)

    def add(text: TextIndex) -> None:
        writer = text._index.writer(heap_size=15_000_000, num_threads=1)
        writer.add_document(text._document(0, Item.parse({"id": "x", "title": "Jaws", "brand": "Steven Spielberg"})))
        writer.commit()
        writer.wait_merging_threads()

    older = tmp_path / "older"
    older.mkdir()
    (older / "analysis").write_text("folded-1")  # as an index made before brand_prefix was written
    tantivy.Index(_schema(folded=True, brand_prefix=False), path=str(older))
    opened = TextIndex(older)
    assert opened.folded and not opened.brand_prefix
    add(opened)
    assert suggested(opened, "jaw") == 1  # its titles; the engine asks no brand of it (a reindex brings them)

    fresh = TextIndex(tmp_path / "fresh")
    assert fresh.brand_prefix and (tmp_path / "fresh" / "analysis").read_text() == "folded-2"
    add(fresh)
    assert suggested(fresh, "jaw") == 1 and suggested(fresh, "spielb") == 0
    assert suggested(fresh, "spielb", brand=True) == 1 and suggested(fresh, "jaw", brand=True) == 0
    assert TextIndex(tmp_path / "fresh").brand_prefix  # and stays so when opened again

"""Which versions a reindex keeps and where a rollback goes, after a rollback: in process, on the embedded engine
(the Celery path and the stack are in tests/integration/test_reindex.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.events import parse_events
from indexer.reindex import ReindexRunner
from indexer.runtime import IndexerRuntime
from indexer.service import to_new_event
from indexer.settings import IndexerSettings
from services.core.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.e2e


def test_a_reindex_after_a_rollback_keeps_the_version_live_before_it_and_drops_the_one_rolled_away_from(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    rt = IndexerRuntime(IndexerSettings(data_dir=tmp_path / "var", index_alias="ri"))
    rt.embedder = embedder
    try:
        good, _ = parse_events([{"op": "upsert", "item": {"id": f"i{n}", "title": f"Film {n}"}} for n in range(5)])
        rt.ledger.append([to_new_event(ev, "test") for _, ev in good])
        rt.drain(max_seconds=60)
        runner = ReindexRunner(rt)

        def live() -> int:
            version = rt.engine.live_version("ri")
            assert version is not None
            return version.version

        def kept() -> set[int]:
            return {v.version for v in rt.engine.list_versions("ri")}

        def reindex() -> None:
            assert runner.run(runner.start().job_id).phase == "done"

        def rollback() -> None:
            assert runner.run(runner.rollback().job_id).phase == "done"

        first = live()
        reindex()
        second = live()
        assert kept() == {first, second}
        rollback()  # the second was wrong: back to the first
        assert live() == first
        reindex()
        third = live()
        # kept: the live one and the one live before it; the version rolled away from is dropped, not kept
        # for being the newest (it was, and the first one, which searches were using, was dropped)
        assert kept() == {first, third}, kept()
        rollback()
        assert live() == first  # not the rejected second one
        rollback()  # a rollback of a rollback goes forward again
        assert live() == third
        assert rt.engine.count("ri") == 5
    finally:
        rt.close()

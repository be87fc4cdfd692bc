"""The GC benchmark's summary of one configuration: every collection counted under its generation."""

from __future__ import annotations

from services.bench.gc_pauses import summary, table


def test_a_summary_counts_each_generations_collections_and_the_long_ones() -> None:
    raw = {
        "latencies_ms": [10.0] * 998 + [50.0, 180.0],
        "pauses_ms": {"young": [1.0, 25.0, 150.0], "middle": [30.0], "full": []},
        "peak_rss": 2**30,
    }
    row = summary(raw, "caches", "abc1234")
    assert row["max"] == 180.0 and row["p50"] == 10.0 and 50.0 <= row["p999"] <= 180.0
    assert row["gc"]["young"] == {"count": 3, "total_ms": 176.0, "max_ms": 150.0, "over_20ms": 2}
    assert row["gc"]["full"] == {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "over_20ms": 0}
    assert row["gc_ms_per_search"] == round(206.0 / 1000, 3)
    line = table([row]).splitlines()[-1]
    assert "3 / 150.0" in line and "| 3 |" in line and "1.00 GiB" in line

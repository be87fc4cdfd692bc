"""The benchmark's interval for a p99 ratio: it holds the measured ratio and narrows with more samples."""

from __future__ import annotations

import numpy as np

from services.bench.common import p99_ratio_interval


def test_the_interval_holds_the_ratio_and_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(3)

    def width(n: int) -> tuple[float, float, float]:
        den = rng.lognormal(0.0, 0.6, n)
        num = 1.4 * rng.lognormal(0.0, 0.6, n)
        low, high = p99_ratio_interval(num.tolist(), den.tolist(), resamples=400)
        ratio = float(np.percentile(num, 99) / np.percentile(den, 99))
        assert low <= ratio <= high
        return low, high, high - low

    low, high, small = width(500)
    assert low < 1.4 < high
    *_, large = width(20_000)
    assert large < small / 2


def test_no_samples_give_no_interval() -> None:
    assert all(np.isnan(v) for v in p99_ratio_interval([], [1.0, 2.0]))

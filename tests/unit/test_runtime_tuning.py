"""The interpreter settings the API serves under, which the query benchmark's own process applies too."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.api.app import GC_THRESHOLDS, tune_runtime


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


def test_the_gc_thresholds_are_set_for_serving(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_runtime()
    assert gc.get_threshold() == GC_THRESHOLDS

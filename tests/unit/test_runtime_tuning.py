"""The interpreter settings the API serves under (and the query benchmark measures under): GC thresholds and the
GIL's switch interval, from the settings."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from services.api.app import GC_THRESHOLDS, tune_runtime
from services.api.settings import ApiSettings


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(interval)


def test_the_settings_are_applied_to_the_process(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_runtime(ApiSettings(gil_switch_interval_ms=2.5))
    assert gc.get_threshold() == GC_THRESHOLDS
    assert sys.getswitchinterval() == pytest.approx(0.0025)
    tune_runtime(ApiSettings())
    assert sys.getswitchinterval() == pytest.approx(0.0005)


def test_a_switch_interval_of_zero_is_refused() -> None:
    with pytest.raises(ValidationError, match="gil_switch_interval_ms"):
        ApiSettings(gil_switch_interval_ms=0)

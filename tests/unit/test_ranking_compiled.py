"""The served model's trees as native code: the same scores as LightGBM's, a cache shared between processes,
and LightGBM's predict kept whenever compiled code is missing or does not reproduce it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import services.ranking.model as model_module
from services.core.settings import CoreSettings
from services.ranking.model import RankingModel
from services.ranking.registry import load_default_model
from services.ranking.service import build_ranking_service
from services.ranking.settings import FeatureLogSettings, RankingSettings

pytestmark = pytest.mark.unit


def probe(model: RankingModel, rows: int = 300) -> np.ndarray:
    rng = np.random.default_rng(3)
    values = rng.random((rows, len(model.card.features))).astype(np.float32) * 3
    values[rng.random(values.shape) < 0.15] = np.nan
    return values


def test_the_compiled_trees_score_as_lightgbm_does(tmp_path: Path) -> None:
    model = load_default_model()
    values = probe(model)
    before = model.predict(values)
    assert model.runtime == "lightgbm"
    assert model.compile(tmp_path) is None and model.runtime == "compiled"
    after = model.predict(values)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-9)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".o", ".txt"]  # no temporary file left behind

    # a second process (here: a second load) finds the object code in the cache and scores the same
    again = load_default_model()
    assert again.compile(tmp_path) is None and again.runtime == "compiled"
    np.testing.assert_array_equal(again.predict(values), after)


def test_compiled_code_that_scores_otherwise_is_not_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_default_model()
    monkeypatch.setattr(model_module, "compile_trees", lambda text, folder: lambda values: np.zeros(values.shape[0]))
    why = model.compile(tmp_path)
    assert why is not None and "differ" in why and model.runtime == "lightgbm"


def test_without_lleaves_lightgbm_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(text: str, folder: Path) -> None:
        raise ImportError("No module named 'lleaves'")

    monkeypatch.setattr(model_module, "compile_trees", missing)
    model = load_default_model()
    why = model.compile(tmp_path)
    assert why is not None and "lleaves" in why and model.runtime == "lightgbm"
    assert model.predict(probe(model)).shape == (300,)


def test_the_service_compiles_what_it_loads_unless_told_not_to(tmp_path: Path) -> None:
    off = FeatureLogSettings(enabled=False)
    core = CoreSettings(data_dir=tmp_path)
    served = build_ranking_service(core, RankingSettings(model="default", feature_log=off)).slot.state.model
    assert served is not None and served.runtime == "compiled"
    assert any((tmp_path / "compiled-models").glob("*.o"))
    plain = build_ranking_service(core, RankingSettings(model="default", feature_log=off, compile_models=False))
    assert plain.slot.state.model is not None and plain.slot.state.model.runtime == "lightgbm"

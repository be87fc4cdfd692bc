"""A ranking model as the registry stores it and the scorer serves it: a LightGBM booster and its card.

The card (`card.json` beside `model.txt`) says what the model reads (the feature set's name, version and
ordered names, and the extractor's parameters), what it was trained on (a fingerprint of the training rows),
how it did (cross-validated metrics) and how it was trained (the parameters).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from services.core.errors import TrawlError
from services.ranking.compiled import Predict, checked, compile_trees
from services.ranking.features import FeatureSet

log = logging.getLogger(__name__)


class ModelError(TrawlError):
    """A model cannot be served: missing, unreadable, or trained on another feature list."""


class ModelRefused(ModelError):
    """A model that loads but does not fit the service (its feature list or extractor differ)."""


class TrainingInfo(BaseModel):
    source: str = Field(description="What the rows came from, e.g. 'qrels:cranfield' or 'interactions'.")
    queries: int
    train_only_queries: int = Field(0, description="Queries only trained on (e.g. synthetic known-item ones).")
    rows: int
    relevant_rows: int
    fingerprint: str = Field(description="sha256 of the training rows (features, labels, query groups).")


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    objective: str = "lambdarank"
    feature_set: str
    feature_version: int
    features: list[str]
    extractor: dict[str, int] = Field(description="Parameters that change what the features mean.")
    window: int = Field(description="Fused candidates per query the model was trained to re-order.")
    training: TrainingInfo
    params: dict[str, Any]
    rounds: int
    metrics: dict[str, float] = Field(default_factory=dict)
    feature_importance: dict[str, float] = Field(default_factory=dict)
    notes: str = ""


class RankingModel:
    """A loaded booster with its card. `predict` is thread-safe (LightGBM's is, and so is the compiled code)
    and uses one thread. `compile` swaps LightGBM's predict for the trees as native code (`compiled.py`)."""

    def __init__(self, booster: Any, card: ModelCard) -> None:
        self._booster = booster
        self.card = card
        self._compiled: Predict | None = None

    @property
    def runtime(self) -> str:
        """What scores the rows: "compiled" (native code) or "lightgbm"."""
        return "compiled" if self._compiled is not None else "lightgbm"

    def compile(self, cache_dir: Path) -> str | None:
        """Serve the trees as native code when that reproduces LightGBM's scores; None on success, else why
        LightGBM's predict stays (logged: the model serves either way)."""
        why: str | None
        try:
            compiled = compile_trees(self._booster.model_to_string(), cache_dir)
        except ImportError as exc:
            why = f"lleaves is not installed ({exc})"
        except Exception as exc:  # the compiler's own errors, a cache folder that cannot be written
            why = f"compiling failed: {exc!r}"
        else:
            why = checked(compiled, self._lightgbm_predict, len(self.card.features))
            if why is None:
                self._compiled = compiled
                return None
        log.warning("model %s: scoring with LightGBM's predict, not compiled code: %s", self.model_id, why)
        return why

    def _lightgbm_predict(self, values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.asarray(self._booster.predict(values, num_threads=1), dtype=np.float64)

    @classmethod
    def from_text(cls, model_text: str, card: ModelCard) -> RankingModel:
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=model_text)
        except Exception as exc:  # LightGBM raises its own error type, or a ValueError on garbage
            raise ModelError(f"model {card.model_id}: the model file does not load: {exc}") from exc
        names = list(booster.feature_name())
        if names != card.features:
            raise ModelRefused(
                f"model {card.model_id}: the booster's features {names[:5]}... differ from its card's features"
            )
        return cls(booster, card)

    @property
    def model_id(self) -> str:
        return self.card.model_id

    def check(self, feature_set: FeatureSet, extractor: Mapping[str, int]) -> None:
        """Refuse (ModelRefused) a model the service cannot feed: another feature list, or other extractor
        parameters (e.g. another feedback depth, which changes what the feedback features mean)."""
        why = feature_set.mismatch(self.card.feature_set, self.card.feature_version, self.card.features)
        if why is None:
            differs = {
                k: (self.card.extractor.get(k), v) for k, v in extractor.items() if self.card.extractor.get(k) != v
            }
            if differs:
                why = "the model's feature extractor parameters differ (model, service): " + ", ".join(
                    f"{k}=({a}, {b})" for k, (a, b) in sorted(differs.items())
                )
        if why is not None:
            raise ModelRefused(f"model {self.model_id} refused: {why}")

    def predict(self, values: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        if values.shape[0] == 0:
            return np.zeros(0)
        out = (self._compiled or self._lightgbm_predict)(values)
        if out.shape != (values.shape[0],) or not np.all(np.isfinite(out)):
            raise ModelError(f"model {self.model_id} returned {out.shape} scores (some not finite?)")
        return out

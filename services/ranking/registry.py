"""The model registry: artifacts in a blob store (a local folder, or an S3 bucket on the stack).

    <model_id>/model.txt    the LightGBM model
    <model_id>/card.json    its card (features and version, training fingerprint, metrics, parameters)
    CURRENT                 the id of the model the service loads by default
    SERVED                  the last `POST /admin/model/reload` that succeeded: every API process follows it

A model is written before CURRENT names it, so a reader never sees a current model without its files. The
shipped default model (trained on Cranfield with collection-independent features) lives in the package,
`services/ranking/default_model/`, and is never written to a registry.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError as PydanticValidationError

from services.core.settings import CoreSettings
from services.core.storage import BlobStore, blob_store_for
from services.ranking.model import ModelCard, ModelError, RankingModel
from services.ranking.settings import RankingSettings

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
DEFAULT = "default"
CURRENT = "current"
NONE = "none"
SERVED = "SERVED"
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")


def check_model_id(model_id: str) -> str:
    if not _MODEL_ID.fullmatch(model_id) or model_id in (DEFAULT, CURRENT, NONE):
        raise ModelError(f"invalid model id {model_id!r}: letters, digits, '.', '_', '-'; not a reserved word")
    return model_id


def _card(data: bytes | str, where: str) -> ModelCard:
    try:
        return ModelCard.model_validate(json.loads(data))
    except (ValueError, PydanticValidationError) as exc:
        raise ModelError(f"{where}: the model card is not valid: {exc}") from exc


def load_default_model(folder: Path = DEFAULT_MODEL_DIR) -> RankingModel:
    """The shipped default model."""
    try:
        card = _card((folder / "card.json").read_text(), str(folder))
        text = (folder / "model.txt").read_text()
    except OSError as exc:
        raise ModelError(f"the shipped default model is missing from {folder}: {exc}") from exc
    return RankingModel.from_text(text, card)


@dataclass(frozen=True)
class ServedRecord:
    """What an admin asked the fleet to serve: a name as `resolve` takes it, and a stamp that tells reloads
    of the same name apart (a reload of 'current' after CURRENT moved is a new instruction)."""

    name: str
    stamp: str


class ModelRegistry:
    def __init__(self, store: BlobStore) -> None:
        self._store = store

    def publish(self, model_text: str, card: ModelCard, *, make_current: bool = False) -> None:
        model_id = check_model_id(card.model_id)
        RankingModel.from_text(model_text, card)  # never store what would not load
        self._store.put(f"{model_id}/model.txt", model_text.encode())
        self._store.put(f"{model_id}/card.json", card.model_dump_json(indent=2).encode())
        if make_current:
            self.set_current(model_id)

    def set_current(self, model_id: str) -> None:
        check_model_id(model_id)
        if self._store.get(f"{model_id}/card.json") is None:
            raise ModelError(f"no model {model_id!r} in the registry")
        self._store.put(CURRENT.upper(), model_id.encode())

    def record_served(self, name: str) -> ServedRecord:
        record = ServedRecord(name, f"{datetime.now(UTC).isoformat()}/{uuid.uuid4().hex[:8]}")
        self._store.put(SERVED, json.dumps({"name": record.name, "stamp": record.stamp}).encode())
        return record

    def served(self) -> ServedRecord | None:
        raw = self._store.get(SERVED)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return ServedRecord(str(data["name"]), str(data["stamp"]))
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign record is ignored; the next reload rewrites it

    def current_id(self) -> str | None:
        raw = self._store.get(CURRENT.upper())
        if raw is None:
            return None
        return raw.decode().strip() or None

    def card(self, model_id: str) -> ModelCard:
        raw = self._store.get(f"{check_model_id(model_id)}/card.json")
        if raw is None:
            raise ModelError(f"no model {model_id!r} in the registry")
        return _card(raw, f"model {model_id}")

    def load(self, model_id: str) -> RankingModel:
        card = self.card(model_id)
        if card.model_id != model_id:
            raise ModelError(f"model {model_id}: its card names another model, {card.model_id!r}")
        text = self._store.get(f"{model_id}/model.txt")
        if text is None:
            raise ModelError(f"model {model_id}: model.txt is missing")
        return RankingModel.from_text(text.decode(), card)

    def cards(self) -> list[ModelCard]:
        ids = sorted({key.split("/", 1)[0] for key in self._store.list() if key.endswith("/card.json")})
        cards = []
        for model_id in ids:
            try:
                cards.append(self.card(model_id))
            except ModelError:
                continue  # a broken artifact is not listed; loading it by id says why
        return sorted(cards, key=lambda c: c.created_at)

    def resolve(self, name: str) -> RankingModel | None:
        """A model by what settings or an admin call name: 'current' (falls back to the shipped default when
        the registry has none), 'default', 'none' (None: the fused order), or a model id."""
        if name == NONE:
            return None
        if name == DEFAULT:
            return load_default_model()
        if name == CURRENT:
            current = self.current_id()
            return self.load(current) if current else load_default_model()
        return self.load(name)


def build_registry(core: CoreSettings, ranking: RankingSettings) -> ModelRegistry:
    return ModelRegistry(blob_store_for(ranking.registry, core.data_dir / "models", create_bucket=True))

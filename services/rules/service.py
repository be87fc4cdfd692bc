"""Managing rules: validation against the catalog schema, conflict checks, durable storage; and the wiring
of the re-ranking stage from settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from services.core.domain import CatalogSchema, FieldKind, Item
from services.core.engines.base import SearchEngine
from services.core.errors import TrawlError, ValidationError
from services.core.filters import parse_filter
from services.core.settings import CoreSettings
from services.rules.conflicts import Conflict, find_conflicts
from services.rules.model import Rule, RuleIn
from services.rules.reranker import RulesReranker
from services.rules.settings import RulesSettings
from services.rules.store import RuleStore


class RuleConflictError(TrawlError):
    """The rule contradicts rules already stored; nothing was written."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        super().__init__("; ".join(f"rule {c.rule_id} ({c.name}): {c.reason}" for c in conflicts))
        self.conflicts = list(conflicts)


class RuleService:
    def __init__(self, store: RuleStore, catalog: CatalogSchema) -> None:
        self.store = store
        self._catalog = catalog

    def validate(self, rule: RuleIn) -> None:
        """What pydantic cannot check alone: filters and fields against the catalog schema."""
        if rule.when.filter is not None:
            parse_filter(rule.when.filter, self._catalog, "when.filter")
        if rule.target is not None:
            parse_filter(rule.target, self._catalog, "target")
        if rule.field is not None:
            kinds = self._catalog.filter_fields()
            if kinds.get(rule.field) is not FieldKind.KEYWORD or rule.field == "id":
                known = ", ".join(sorted(f for f, k in kinds.items() if k is FieldKind.KEYWORD and f != "id"))
                raise ValidationError("field", f"{rule.field!r} is not a keyword field; diversity fields: {known}")

    def create(self, rule: RuleIn) -> Rule:
        self.validate(rule)
        conflicts = find_conflicts(rule, self.store.all())
        if conflicts:
            raise RuleConflictError(conflicts)
        return self.store.create(rule)

    def replace(self, rule_id: str, rule: RuleIn) -> Rule:
        self.store.get(rule_id)  # 404 before anything else
        self.validate(rule)
        conflicts = find_conflicts(rule, self.store.all(), rule_id=rule_id)
        if conflicts:
            raise RuleConflictError(conflicts)
        return self.store.replace(rule_id, rule)

    def delete(self, rule_id: str) -> None:
        self.store.delete(rule_id)

    def get(self, rule_id: str) -> Rule:
        return self.store.get(rule_id)

    def all(self) -> list[Rule]:
        return self.store.all()

    def close(self) -> None:
        self.store.close()


class EngineItems:
    """Items and vectors by id from the live index, through the engine contract (pins, MMR)."""

    def __init__(self, engine: SearchEngine, alias: str) -> None:
        self._engine = engine
        self._alias = alias

    def items(self, ids: Sequence[str]) -> Mapping[str, Item]:
        return {d.item.id: d.item for d in self._engine.get(self._alias, list(ids))}

    def vectors(self, ids: Sequence[str]) -> Mapping[str, npt.NDArray[np.float32]]:
        return self._engine.get_vectors(self._alias, list(ids))


def build_rules(core: CoreSettings, settings: RulesSettings, engine: SearchEngine) -> tuple[RuleService, RulesReranker]:
    store = RuleStore(settings.path or core.data_dir / "rules.sqlite")
    lookup = EngineItems(engine, core.index_alias)
    reranker = RulesReranker(store, core.catalog, items=lookup.items, vectors=lookup.vectors)
    return RuleService(store, core.catalog), reranker

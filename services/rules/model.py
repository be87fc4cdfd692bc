"""Business rules: what a merchandiser can ask of the final order, and when.

A rule has an action with its parameters, a scope (`when`: a query, exact or contained, and/or a filter
context; empty: every search) and a validity window. The JSON form is what `/admin/rules` accepts:

    {"name": "summer pin", "action": "pin", "items": ["sku-1"], "position": 1,
     "when": {"query": "sandals", "match": "contains"},
     "valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-09-01T00:00:00Z"}

Actions, in the order the re-ranker applies them (see docs/rules.md):
    availability   drop items that are not available
    hide           drop the given items (or the items a target filter matches)
    boost, bury    add or subtract `amount` to the normalised score (scores scaled to [0, 1] per request)
    freshness      multiply the normalised score by (1 - weight) + weight * 0.5 ** (age / half_life_days)
    mmr            re-order the top `top_k` by maximal marginal relevance over item vectors (`lambda_`)
    diversity      at most `max_per` items sharing a value of `field` in the top `top_k`
    pin            put the given items at `position` (1-based), in the given order; last, so nothing moves them
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.search.types import normalise_text

Action = Literal["pin", "hide", "boost", "bury", "freshness", "mmr", "diversity", "availability"]
# The order the re-ranker applies actions in; docs/rules.md explains why.
ORDER: tuple[Action, ...] = ("availability", "hide", "boost", "bury", "freshness", "mmr", "diversity", "pin")
MAX_ITEMS = 100
DIVERSITY_FIELDS_HELP = "brand, categories, tags, or a declared keyword attribute (attributes.<name>)"


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class When(BaseModel):
    """Where a rule applies. No query and no filter: every search."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, description="The query text the rule is for (case and spacing ignored).")
    match: Literal["exact", "contains"] = Field(
        "exact", description="`exact`: the whole query; `contains`: the query contains these words in order."
    )
    filter: dict[str, Any] | None = Field(
        None, description="A filter context: the rule applies when the search's filter includes this filter."
    )

    @field_validator("query")
    @classmethod
    def _norm_query(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = normalise_text(value).casefold()
        if not text:
            raise ValueError("must not be blank (leave it out to apply to every query)")
        return text


class RuleIn(BaseModel):
    """A rule as created or replaced through the API."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    action: Action
    when: When = Field(default_factory=When)
    enabled: bool = True
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    # pin, hide, boost, bury: the items, by id ...
    items: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list, max_length=MAX_ITEMS)
    # ... or (hide, boost, bury) every item a filter matches, e.g. {"term": {"brand": "Acme"}}
    target: dict[str, Any] | None = None
    position: int | None = Field(None, ge=1, le=1000, description="pin: the 1-based position of the first item.")
    amount: float | None = Field(None, gt=0, le=10, description="boost, bury: added to / taken from the score.")
    half_life_days: float | None = Field(None, gt=0, description="freshness: age at which the decay halves.")
    weight: float | None = Field(None, gt=0, le=1, description="freshness: how much of the score decays.")
    field: str | None = Field(None, description=f"diversity: {DIVERSITY_FIELDS_HELP}.")
    max_per: int | None = Field(None, ge=1, le=1000, description="diversity: items per value in the top K.")
    top_k: int | None = Field(None, ge=1, le=1000, description="diversity, mmr: how much of the top is shaped.")
    lambda_: float | None = Field(
        None, ge=0, le=1, alias="lambda", description="mmr: 1 = relevance only, 0 = diversity only."
    )

    _valid_from = field_validator("valid_from")(_utc)
    _valid_until = field_validator("valid_until")(_utc)

    @model_validator(mode="after")
    def _by_action(self) -> RuleIn:
        a = self.action
        allowed: dict[str, set[str]] = {
            "pin": {"items", "position"},
            "hide": {"items", "target"},
            "boost": {"items", "target", "amount"},
            "bury": {"items", "target", "amount"},
            "freshness": {"half_life_days", "weight"},
            "mmr": {"top_k", "lambda_"},
            "diversity": {"field", "max_per", "top_k"},
            "availability": set(),
        }
        params = {"items", "target", "position", "amount", "half_life_days", "weight", "field", "max_per", "top_k"}
        params |= {"lambda_"}
        given = {p for p in params if getattr(self, p) not in (None, [])}
        extra = given - allowed[a]
        if extra:
            names = ", ".join(sorted("lambda" if e == "lambda_" else e for e in extra))
            raise ValueError(f"{a} rules take no {names}")
        if a in ("pin", "hide", "boost", "bury"):
            if a == "pin" and not self.items:
                raise ValueError("a pin rule needs items")
            if self.items and self.target is not None:
                raise ValueError(f"a {a} rule takes items or a target filter, not both")
            if not self.items and self.target is None:
                raise ValueError(f"a {a} rule needs items or a target filter")
            if len(set(self.items)) != len(self.items):
                raise ValueError("items must not repeat")
        if a == "pin" and self.position is None:
            self.position = 1
        if a in ("boost", "bury") and self.amount is None:
            raise ValueError(f"a {a} rule needs an amount (added to or taken from a score in [0, 1])")
        if a == "freshness":
            if self.half_life_days is None:
                raise ValueError("a freshness rule needs half_life_days")
            if self.weight is None:
                self.weight = 0.5
        if a == "diversity":
            if self.field is None or self.max_per is None:
                raise ValueError("a diversity rule needs a field and max_per")
            if self.top_k is None:
                self.top_k = 10
        if a == "mmr":
            if self.top_k is None:
                self.top_k = 10
            if self.lambda_ is None:
                self.lambda_ = 0.7
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self

    def active_at(self, now: datetime) -> bool:
        if not self.enabled:
            return False
        if self.valid_from is not None and now < self.valid_from:
            return False
        return not (self.valid_until is not None and now >= self.valid_until)


class Rule(RuleIn):
    """A stored rule: the input plus its id and times."""

    id: str
    created_at: datetime
    updated_at: datetime

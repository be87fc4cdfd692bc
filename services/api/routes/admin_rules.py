"""Admin: business rules (pin, hide, boost, bury, freshness, MMR, diversity, availability). Create, list,
read, replace, delete; validated against the catalog schema; a rule that conflicts with stored ones is
answered 409 with the conflicting rules, and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.api.deps import AdminDep, RulesDep
from services.api.schemas.common import ERROR_RESPONSES, ErrorDetail, ErrorResponse
from services.rules.model import Rule, RuleIn
from services.rules.service import RuleConflictError

router = APIRouter(prefix="/admin/rules", tags=["admin"], dependencies=[AdminDep], responses=ERROR_RESPONSES)


class RuleOut(Rule):
    active: bool  # enabled and inside its validity window now


class RuleList(BaseModel):
    rules: list[RuleOut]


class ConflictOut(BaseModel):
    rule_id: str
    name: str
    reason: str


class ConflictResponse(ErrorResponse):
    conflicts: list[ConflictOut]


def _out(rule: Rule) -> RuleOut:
    return RuleOut(**rule.model_dump(), active=rule.active_at(datetime.now(UTC)))


def _conflict(exc: RuleConflictError) -> JSONResponse:
    body = ConflictResponse(
        detail=[ErrorDetail(field=None, message=f"conflicts with {exc}", type="rule_conflict")],
        conflicts=[ConflictOut(rule_id=c.rule_id, name=c.name, reason=c.reason) for c in exc.conflicts],
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_409_CONFLICT)


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ConflictResponse, "description": "The rule conflicts with stored rules; none written."}
}


@router.get("", summary="List rules")
def list_rules(rules: RulesDep) -> RuleList:
    return RuleList(rules=[_out(r) for r in rules.all()])


@router.post(
    "", status_code=status.HTTP_201_CREATED, summary="Create a rule", response_model=RuleOut, responses=CONFLICT
)
def create_rule(body: RuleIn, rules: RulesDep) -> RuleOut | JSONResponse:
    try:
        return _out(rules.create(body))
    except RuleConflictError as exc:
        return _conflict(exc)


@router.get("/{rule_id}", summary="Read a rule")
def get_rule(rule_id: str, rules: RulesDep) -> RuleOut:
    return _out(rules.get(rule_id))


@router.put("/{rule_id}", summary="Replace a rule", response_model=RuleOut, responses=CONFLICT)
def replace_rule(rule_id: str, body: RuleIn, rules: RulesDep) -> RuleOut | JSONResponse:
    try:
        return _out(rules.replace(rule_id, body))
    except RuleConflictError as exc:
        return _conflict(exc)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a rule")
def delete_rule(rule_id: str, rules: RulesDep) -> Response:
    rules.delete(rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

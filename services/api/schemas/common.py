"""Models and helpers every route shares: the error body, the query text, filters given as JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from services.core.domain import CatalogSchema
from services.core.errors import ValidationError
from services.core.filters import Filter, parse_filter

MAX_QUERY_BYTES = 10 * 1024

# What the query routes answer with: their response models serialised by pydantic-core straight to JSON.
JSON_MEDIA_TYPE = "application/json"


class ErrorDetail(BaseModel):
    field: str | None = Field(description="Dotted path of the offending input, e.g. `q` or `filter.term`.")
    message: str
    type: str = Field(description="A short code: `missing`, `json_invalid`, `invalid_filter`, `not_found`, ...")


class ErrorResponse(BaseModel):
    """Every 4xx (and 503) answer has this body: one entry per problem, each naming its field."""

    detail: list[ErrorDetail]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Bad input: each entry names the field and the problem."},
    503: {"model": ErrorResponse, "description": "The search engine is unavailable or has no live index."},
}


def _check_query_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it has a lone surrogate)") from None
    if size > MAX_QUERY_BYTES:
        raise ValueError(f"must be at most {MAX_QUERY_BYTES} bytes of UTF-8, got {size}")
    return value


QueryText = Annotated[
    str,
    AfterValidator(_check_query_text),
    Field(description=f"The query text: not blank, at most {MAX_QUERY_BYTES} bytes as UTF-8; any script."),
]

FILTER_DESCRIPTION = (
    "A neutral filter, applied inside every retriever: "
    '`{"term": {"brand": "Acme"}}`, `{"terms": {"tags": ["a", "b"]}}`, '
    '`{"range": {"price": {"gte": 1, "lt": 9}}}`, '
    '`{"exists": "brand"}`, and `{"and": [...]}`, `{"or": [...]}`, `{"not": {...}}` of those.'
)


def filter_from_json_text(text: str | None, schema: CatalogSchema) -> Filter | None:
    """A filter given as JSON text (in a query string) -> typed filter; bad JSON or fields name `filter`."""
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("filter", f"is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ValidationError("filter", f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationError("filter", "is nested too deeply") from None
    return parse_filter(data, schema)


def filter_from_json(data: Any, schema: CatalogSchema) -> Filter | None:
    return None if data is None else parse_filter(data, schema)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` written in place: for `openapi_extra` of a route that reads
    its body itself (a `$ref` there would point at a component FastAPI never registered)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def json_body(*models: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body of one of `models`."""
    schemas = [inline_schema(m) for m in models]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.domain import AttributeType, CatalogSchema
from services.core.engines.opensearch.dsl import to_dsl
from services.core.errors import FilterError
from services.core.filters import And, Exists, Not, Or, Range, Term, Terms, filter_fields, parse_filter

pytestmark = pytest.mark.unit


def test_json_form_parses_into_typed_filters() -> None:
    flt = parse_filter(
        {
            "and": [
                {"term": {"brand": "Pixar"}},
                {"terms": {"tags": ["family", "animation"]}},
                {"range": {"price": {"gte": 1, "lt": 20}}},
                {"not": {"exists": "rating"}},
                {"or": [{"term": {"available": True}}, {"range": {"published_at": {"gte": "2020-01-01"}}}]},
            ]
        }
    )
    assert flt == And(
        (
            Term("brand", "Pixar"),
            Terms("tags", ("family", "animation")),
            Range("price", gte=1.0, lt=20.0),
            Not(Exists("rating")),
            Or((Term("available", True), Range("published_at", gte=datetime(2020, 1, 1, tzinfo=UTC)))),
        )
    )
    assert filter_fields(flt) == {"brand", "tags", "price", "rating", "available", "published_at"}


@pytest.mark.parametrize(
    ("data", "where", "words"),
    [
        ({"term": {"colour": "red"}}, "filter.term", "unknown field 'colour'"),
        ({"range": {"brand": {"gte": 1}}}, "filter.range.brand", "range needs a number or date"),
        ({"term": {"price": "cheap"}}, "filter.term.price", "expected a number"),
        ({"term": {"available": "yes"}}, "filter.term.available", "expected a boolean"),
        ({"range": {"price": {"above": 1}}}, "filter.range.price", "gte, gt, lte, lt"),
        ({"and": []}, "filter.and", "non-empty list"),
        ({"xor": []}, "filter", "unknown operator 'xor'"),
        ({"and": [{"term": {"brand": "a"}}, {"term": {"nope": 1}}]}, "filter.and[1].term", "unknown field"),
        ("brand", "filter", "exactly one operator"),
    ],
)
def test_bad_filters_name_the_place_at_fault(data: object, where: str, words: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(data)
    assert info.value.field == where
    assert words in info.value.message


def test_declared_attributes_are_filterable() -> None:
    schema = CatalogSchema(attributes={"runtime": AttributeType.NUMBER})
    assert parse_filter({"range": {"attributes.runtime": {"lte": 90}}}, schema) == Range("attributes.runtime", lte=90.0)
    with pytest.raises(FilterError):
        parse_filter({"range": {"attributes.runtime": {"lte": 90}}})


def test_opensearch_translation() -> None:
    flt = parse_filter(
        {
            "and": [
                {"term": {"brand": "A"}},
                {"not": {"exists": "rating"}},
                {"or": [{"range": {"published_at": {"lt": "2001-01-01T00:00:00+00:00"}}}]},
            ]
        }
    )
    assert to_dsl(flt) == {
        "bool": {
            "filter": [
                {"term": {"brand": "A"}},
                {"bool": {"must_not": [{"exists": {"field": "rating"}}]}},
                {
                    "bool": {
                        "should": [{"range": {"published_at": {"lt": "2001-01-01T00:00:00+00:00"}}}],
                        "minimum_should_match": 1,
                    }
                },
            ]
        }
    }

"""The explicit index body: settings, analyzers, and a mapping with no dynamic fields."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.core.domain import AttributeType, CatalogSchema
from services.core.settings import OpenSearchSettings

# Text fields that keyword search reads, as OpenSearch field names.
TEXT_FIELD_NAMES = {
    "title": "title",
    "body": "body",
    "tags": "tags.text",
    "categories": "categories.text",
    "brand": "brand.text",
}

_ATTRIBUTE_TYPES = {
    AttributeType.KEYWORD: {"type": "keyword"},
    AttributeType.NUMBER: {"type": "double"},
    AttributeType.BOOLEAN: {"type": "boolean"},
    AttributeType.DATE: {"type": "date"},
}


# The built-in `english` and `standard` analyzers with ASCII folding after lower-casing: "Misérables" is found by
# "miserables" (the embedded engine folds the same way). The folding changes the definition hash, so a reindex
# of an older version builds a new index rather than cloning the old one.
STEMMED, FOLDED = "trawl_english", "trawl_folded"
ANALYSIS: dict[str, Any] = {
    "filter": {
        "trawl_english_stop": {"type": "stop", "stopwords": "_english_"},
        "trawl_english_stemmer": {"type": "stemmer", "language": "english"},
        "trawl_english_possessive": {"type": "stemmer", "language": "possessive_english"},
    },
    "analyzer": {
        STEMMED: {
            "tokenizer": "standard",
            "filter": [
                "trawl_english_possessive",
                "lowercase",
                "asciifolding",
                "trawl_english_stop",
                "trawl_english_stemmer",
            ],
        },
        FOLDED: {"tokenizer": "standard", "filter": ["lowercase", "asciifolding"]},
    },
}


def _keyword_with_text() -> dict[str, Any]:
    return {"type": "keyword", "fields": {"text": {"type": "text", "analyzer": STEMMED}}}


def index_body(
    settings: OpenSearchSettings, schema: CatalogSchema, *, dimension: int, meta: dict[str, Any]
) -> dict[str, Any]:
    method: dict[str, Any] = {
        "name": "hnsw",
        "engine": settings.knn_engine,
        "space_type": "cosinesimil",
        "parameters": {"m": settings.hnsw_m, "ef_construction": settings.hnsw_ef_construction},
    }
    return {
        "settings": {
            "index": {
                "number_of_shards": settings.shards,
                "number_of_replicas": settings.replicas,
                "knn": True,
                "knn.algo_param.ef_search": settings.hnsw_ef_search,
                "analysis": ANALYSIS,
            }
        },
        "mappings": {
            "dynamic": "strict",
            "_meta": {"trawl": meta},
            "properties": {
                "id": {"type": "keyword"},
                "title": {
                    "type": "text",
                    "analyzer": STEMMED,
                    "fields": {
                        "raw": {"type": "keyword", "ignore_above": 1024},
                        "sayt": {"type": "search_as_you_type", "analyzer": FOLDED},
                    },
                },
                "body": {"type": "text", "analyzer": STEMMED},
                "tags": _keyword_with_text(),
                "categories": _keyword_with_text(),
                # search-as-you-type on the brand as on the title: suggest matches either (engine.py)
                "brand": {
                    "type": "keyword",
                    "fields": {
                        "text": {"type": "text", "analyzer": STEMMED},
                        "sayt": {"type": "search_as_you_type", "analyzer": FOLDED},
                    },
                },
                "price": {"type": "double"},
                "available": {"type": "boolean"},
                "rating": {"type": "float"},
                "popularity": {"type": "float"},
                "published_at": {"type": "date"},
                # Declared attributes are indexed for filters; undeclared ones are kept in _source only.
                "attributes": {
                    "type": "object",
                    "dynamic": False,
                    "properties": {name: _ATTRIBUTE_TYPES[kind] for name, kind in schema.attributes.items()},
                },
                "version": {"type": "long"},
                "content_hash": {"type": "keyword"},
                "vector": {"type": "knn_vector", "dimension": dimension, "method": method},
                # The same vector as little-endian float32 bytes in a stored field: `get_vectors` reads it
                # without the source. The float arrays of 100 sources took 108 ms on the development node
                # (it prints every float); the stored bytes of the same 100, 20 ms.
                "vector_bytes": {"type": "binary", "store": True},
            },
        },
    }


def definition_hash(body: dict[str, Any]) -> str:
    """What decides whether two index versions are built alike: settings and mapping, without `_meta`."""
    mappings = {k: v for k, v in body["mappings"].items() if k != "_meta"}
    blob = json.dumps({"settings": body["settings"], "mappings": mappings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

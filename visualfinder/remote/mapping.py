"""The remote index's shape: settings, the knn_vector mapping, metadata fields, and the check
that an existing index holds vectors this library can write and query.

Shapes follow the OpenSearch k-NN documentation (2.x and 3.x): `index.knn: true`; a
`knn_vector` field with `dimension` and `method` {name: hnsw, space_type, engine, parameters
{m, ef_construction}}.
"""

from __future__ import annotations

from dataclasses import dataclass

from visualfinder.errors import RemoteMismatchError

VECTOR_FIELD = "vector"
MAPPING_FORMAT = 1

# Library metric -> OpenSearch space type. Scores are converted back in query.py.
SPACE_TYPES = {"cosine": "cosinesimil", "ip": "innerproduct", "l2": "l2"}

_KEYWORD = {"type": "keyword"}
# Keyword sub-field for exact match and "contains" (wildcard) filters on text fields. Lucene
# refuses terms over 32766 bytes; 8191 characters of UTF-8 stay below that.
_TEXT_WITH_RAW = {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 8191}}}

METADATA_PROPERTIES: dict[str, dict] = {
    "library_id": _KEYWORD,
    "image_id": {"type": "long"},
    "path": _KEYWORD,
    "folder": _KEYWORD,  # the catalog folder the image was indexed under
    "dir": _KEYWORD,  # the directory that holds the file
    "file_name": _KEYWORD,
    "title": _TEXT_WITH_RAW,
    "description": _TEXT_WITH_RAW,
    "tags": _KEYWORD,
    "sku": _KEYWORD,
    "url": _KEYWORD,
    "price": {"type": "double"},
    "width": {"type": "integer"},
    "height": {"type": "integer"},
    "format": _KEYWORD,
    "size": {"type": "long"},
    "mtime": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
    "mtime_ns": {"type": "long", "index": False},
    "content_hash": _KEYWORD,
    "model_key": _KEYWORD,
    # Free-form product metadata: kept in _source for results, never indexed (no mapping explosion).
    "extra": {"type": "object", "enabled": False},
}


@dataclass(frozen=True)
class RemoteSpec:
    """What the remote index must agree with: the library's model, its dimension and metric."""

    dimension: int
    metric: str
    model_key: str
    engine: str = "faiss"
    m: int = 16
    ef_construction: int = 128

    @property
    def space_type(self) -> str:
        return SPACE_TYPES[self.metric]


def vector_mapping(spec: RemoteSpec) -> dict:
    return {
        "type": "knn_vector",
        "dimension": spec.dimension,
        "method": {
            "name": "hnsw",
            "space_type": spec.space_type,
            "engine": spec.engine,
            "parameters": {"m": spec.m, "ef_construction": spec.ef_construction},
        },
    }


def index_body(spec: RemoteSpec) -> dict:
    """The body of `PUT <index>`: k-NN on, the vector field, metadata fields, and our _meta."""
    return {
        "settings": {"index": {"knn": True}},
        "mappings": {
            # Documents are written only by visualfinder: a stray field is a bug, reported per item.
            "dynamic": "strict",
            "_meta": {
                "visualfinder": {
                    "format": MAPPING_FORMAT,
                    "model_key": spec.model_key,
                    "dimension": spec.dimension,
                    "metric": spec.metric,
                }
            },
            "properties": {VECTOR_FIELD: vector_mapping(spec), **METADATA_PROPERTIES},
        },
    }


@dataclass(frozen=True)
class MappingCheck:
    """The outcome of comparing an existing index with the spec."""

    missing_fields: dict[str, dict]  # metadata fields to add (an additive, safe mapping update)
    engine: str | None


def check_mapping(index: str, mapping: dict, spec: RemoteSpec) -> MappingCheck:
    """Compare an existing index's mapping (GET <index>/_mapping, one index) with the spec.

    Raises RemoteMismatchError naming what differs; never changes anything itself.
    """
    advice = "choose another index (--index NAME) or replace this one with --recreate (deletes its documents)"
    properties = mapping.get("properties", {})
    vector = properties.get(VECTOR_FIELD)
    meta = (mapping.get("_meta") or {}).get("visualfinder")
    if not isinstance(vector, dict) or vector.get("type") != "knn_vector" or not isinstance(meta, dict):
        raise RemoteMismatchError(
            f"the remote index {index!r} exists but was not created by visualfinder "
            f"(no knn_vector field {VECTOR_FIELD!r} with visualfinder's _meta); {advice}"
        )
    dimension = int(vector.get("dimension", 0))
    if dimension != spec.dimension:
        raise RemoteMismatchError(
            f"the remote index {index!r} holds {dimension}-dimension vectors (model {meta.get('model_key')}), "
            f"but this library's model {spec.model_key} makes {spec.dimension}-dimension vectors; {advice}"
        )
    method = vector.get("method") or {}
    space = method.get("space_type") or vector.get("space_type") or "l2"
    if space != spec.space_type:
        raise RemoteMismatchError(
            f"the remote index {index!r} compares vectors by {space}, but this library's metric is "
            f"{spec.metric} ({spec.space_type}); {advice}"
        )
    if meta.get("model_key") != spec.model_key:
        raise RemoteMismatchError(
            f"the remote index {index!r} holds vectors of model {meta.get('model_key')}, but this library "
            f"uses {spec.model_key}: their vectors cannot be compared; {advice}"
        )
    missing = {name: body for name, body in METADATA_PROPERTIES.items() if name not in properties}
    return MappingCheck(missing, method.get("engine"))

"""Catalog rows -> OpenSearch documents, and _bulk bodies packed by size in bytes.

A document is built from the catalog's state when it is sent, not when the change was
queued: however many edits an image had, one up-to-date document goes out.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator

import numpy as np

from visualfinder.catalog.outbox import OutboxEntry
from visualfinder.catalog.store import Catalog, ImageRecord, path_from_db, path_to_db
from visualfinder.remote.mapping import VECTOR_FIELD
from visualfinder.remote.opensearch import BulkItem

# The catalog keeps embeddings as float16 (11 significant bits): 5 significant decimal digits
# give back exactly the same float16, so the cluster scores the very vectors the local index
# holds. _bulk bodies are mostly vector digits, and float16 has only 65536 values: their JSON
# text is made once, and a vector is a lookup and a join (~30x faster than json.dumps).
_DIGITS = "%.5g"


@functools.cache
def _float16_text() -> np.ndarray:
    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64).tolist()
    return np.array([(_DIGITS % v).encode("ascii") for v in values], dtype=object)


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def vector_json(vector: np.ndarray) -> bytes:
    """A vector as a JSON array of its float16 values (which parse back to the same float16)."""
    bits = np.ascontiguousarray(vector, dtype=np.float16).ravel().view(np.uint16)
    return b"[" + b",".join(_float16_text()[bits].tolist()) + b"]"


def document(record: ImageRecord, folder: str | None, library_id: str, model_key: str) -> dict:
    """The remote document of one image, without its vector (paths in the catalog's storable form,
    see path_to_db)."""
    path = path_to_db(record.path)
    return {
        "library_id": library_id, "image_id": record.id, "path": path,
        "folder": path_to_db(folder) if folder else None, "dir": os.path.dirname(path),
        "file_name": os.path.basename(path), "title": record.title, "description": record.description,
        "tags": list(record.tags), "sku": record.sku, "url": record.url, "price": record.price,
        "width": record.width, "height": record.height, "format": record.format, "size": record.size,
        "mtime": record.mtime_ns // 1_000_000, "mtime_ns": record.mtime_ns, "content_hash": record.content_hash,
        "model_key": model_key, "extra": record.extra or {},
    }  # fmt: skip


def source_line(doc: dict, vector: np.ndarray) -> bytes:
    """The _bulk source line: the document with its vector spliced in as pre-formatted JSON."""
    return dumps(doc)[:-1] + b',"' + VECTOR_FIELD.encode() + b'":' + vector_json(vector) + b"}\n"


def record_from_source(source: dict, thumb_path: str | None = None) -> ImageRecord:
    """An ImageRecord from a remote document (the inverse of `document`, without the vector)."""
    return ImageRecord(
        id=int(source.get("image_id", 0)), path=path_from_db(source.get("path") or ""), folder_id=0,
        size=int(source.get("size") or 0), mtime_ns=int(source.get("mtime_ns") or 0),
        width=source.get("width"), height=source.get("height"), format=source.get("format"),
        thumb_path=thumb_path, content_hash=source.get("content_hash"), sku=source.get("sku"),
        title=source.get("title"), description=source.get("description"), url=source.get("url"),
        price=source.get("price"), extra=source.get("extra") or {}, tags=list(source.get("tags") or []),
    )  # fmt: skip


def bulk_items(catalog: Catalog, entries: list[OutboxEntry], index: str, model_key: str) -> list[BulkItem]:
    """One _bulk action per outbox entry: index the current document, or delete it.

    An upsert whose image is gone, failed to decode, or has no vector of the library's model
    (awaiting re-embedding) becomes a delete: the cluster must not keep a stale vector.
    """
    upserts = [e.image_id for e in entries if e.op == "upsert"]
    records = catalog.records(upserts) if upserts else {}
    vectors: dict[int, np.ndarray] = {}
    if upserts:
        for ids, block in catalog.iter_embeddings(model_key, ids=upserts):
            vectors.update(zip(ids.tolist(), block, strict=True))
    folders = {f.id: f.path for f in catalog.folders()} if upserts else {}
    library_id = catalog.library_id
    items = []
    for entry in entries:
        record = records.get(entry.image_id)
        vector = vectors.get(entry.image_id)
        if entry.op == "upsert" and record is not None and vector is not None:
            doc = document(record, folders.get(record.folder_id), library_id, model_key)
            lines = (
                dumps({"index": {"_index": index, "_id": entry.doc_id}}) + b"\n" + source_line(doc, vector)
            )
            items.append(BulkItem(entry, lines, "index"))
        else:
            items.append(
                BulkItem(entry, dumps({"delete": {"_index": index, "_id": entry.doc_id}}) + b"\n", "delete")
            )
    return items


def pack(items: Iterable[BulkItem], max_bytes: int, max_docs: int) -> Iterator[list[BulkItem]]:
    """Group items into _bulk bodies of at most `max_bytes` (an oversize item goes alone)."""
    batch: list[BulkItem] = []
    size = 0
    for item in items:
        if batch and (size + len(item.lines) > max_bytes or len(batch) >= max_docs):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item.lines)
    if batch:
        yield batch

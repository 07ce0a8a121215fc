"""The catalog's records (what its queries return and its writes take), and how paths, tags
and vectors are stored in SQLite. Imported from visualfinder.catalog.store by the rest of the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SQL_CHUNK = 900  # stay well below SQLite's bound-variable limit
# The product fields of `image_meta` (imported extras are kept as JSON beside them).
META_FIELDS = ("sku", "title", "description", "url", "price")


def sql_chunks(items: list, size: int = SQL_CHUNK) -> Iterator[list]:
    """`items` in slices small enough to be bound as one statement's variables."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- paths ---------------------------------------------------------------------------------
# POSIX file names need not be UTF-8. Python represents undecodable bytes as lone surrogates
# (U+DC80..U+DCFF), which SQLite cannot store as text. We map them, reversibly, to private-use
# code points of plane 15 so such files are indexed like any other.
_SURROGATE = re.compile("[\udc80-\udcff]")
_PRIVATE = re.compile("[\U000f0080-\U000f00ff]")


def path_to_db(path: str) -> str:
    if path.isascii():
        return path
    return _SURROGATE.sub(lambda m: chr(0xF0000 + ord(m.group()) - 0xDC00), path)


def path_from_db(text: str) -> str:
    if text.isascii():
        return text
    return _PRIVATE.sub(lambda m: chr(0xDC00 + ord(m.group()) - 0xF0000), text)


def subtree_bounds(folder: str) -> tuple[str, str]:
    """Half-open text range holding every path strictly below `folder` (and nothing else).

    '0' is the character after '/', so `/a/b/` <= path < `/a/b0` matches `/a/b/x` but not `/a/bc`.
    """
    folder = path_to_db(folder.rstrip("/\\") or "/")
    sep = "\\" if "\\" in folder and "/" not in folder else "/"
    if folder.endswith(sep):  # the root folder
        return folder, folder[:-1] + chr(ord(sep) + 1)
    return folder + sep, folder + chr(ord(sep) + 1)


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    id: int
    path: str
    watched: bool
    added_at: float


@dataclass(frozen=True)
class ModelRef:
    """An embedding model as the library records it: open_clip name, pretrained tag/file, vector key."""

    name: str
    pretrained: str
    key: str


@dataclass(frozen=True)
class StatRow:
    """What the scanner needs to know about a catalogued file to diff it against the disk."""

    id: int
    path: str
    folder_id: int
    size: int
    mtime_ns: int
    status: str
    content_hash: str | None
    model_key: str | None  # the model asked about, when the row has its embedding
    has_embedding: bool
    # A skipped file's kind ("permanent" | "transient"), failures in a row, when a scan may try
    # it again (wall clock), and its ctime when it failed (see ingest/retry.py).
    error_kind: str | None = None
    attempts: int = 0
    retry_at: float | None = None
    ctime_ns: int | None = None


@dataclass(frozen=True)
class EmbeddedSource:
    """A row whose embedding can be reused for another file with identical content."""

    id: int
    width: int | None
    height: int | None
    format: str | None
    thumb_path: str | None
    embedding: np.ndarray


@dataclass
class ImageWrite:
    """One image's new state, as the pipeline determined it."""

    path: str
    folder_id: int
    size: int
    mtime_ns: int
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    embedding: np.ndarray | None = None
    model_key: str | None = None
    thumb_path: str | None = None
    error: str | None = None
    # For a skipped file (see ingest/retry.py): its kind, failures in a row, next try, ctime.
    error_kind: str | None = None
    attempts: int = 0
    retry_at: float | None = None
    ctime_ns: int | None = None

    @property
    def status(self) -> str:
        return "error" if self.error else "ok"


@dataclass
class CatalogChanges:
    """A batch of changes committed in one transaction (a crash loses at most this batch)."""

    inserts: list[ImageWrite] = field(default_factory=list)
    # Same row (id kept), new content: embedding and decode facts replaced.
    updates: list[tuple[int, ImageWrite]] = field(default_factory=list)
    # Same row, same content, new path and/or stat: embedding and metadata kept.
    moves: list[tuple[int, ImageWrite]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.moves) + len(self.deletes)


@dataclass(frozen=True)
class AppliedChanges:
    generation: int
    inserted_ids: list[int]


@dataclass
class ImageRecord:
    """An image with its product metadata, as shown in results and exports."""

    id: int
    path: str
    folder_id: int
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    format: str | None
    thumb_path: str | None
    content_hash: str | None
    sku: str | None = None
    title: str | None = None
    description: str | None = None
    url: str | None = None
    price: float | None = None
    extra: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class SkippedFile:
    """A file indexing skipped: why, which kind of failure, and when it is tried again."""

    path: str
    reason: str
    kind: str  # "permanent" (tried when it changes) | "transient" (tried on later scans)
    attempts: int
    retry_at: float | None


@dataclass(frozen=True)
class CatalogStats:
    folders: int
    images: int
    ok: int
    errors: int
    embedded_current: int
    needs_embedding: int
    outbox_pending: int


def normalise_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, lower-case, de-duplicated, empty ones dropped, order kept."""
    seen: dict[str, None] = {}
    for tag in tags:
        clean = " ".join(str(tag).split()).lower()
        if clean:
            seen.setdefault(clean, None)
    return list(seen)


def embedding_to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float16).tobytes()


def blob_to_embedding(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float16)

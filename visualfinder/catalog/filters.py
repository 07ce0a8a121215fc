"""Filters: which catalog images a search, a browse or a duplicate scan may consider, and the
SQL that selects them (a WHERE clause over `images i`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from visualfinder.catalog.records import META_FIELDS, subtree_bounds
from visualfinder.errors import QueryError

# File types users can filter on, by the name they would type -> Pillow's format name.
TYPE_ALIASES = {
    "jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP",
    "tif": "TIFF", "tiff": "TIFF", "heic": "HEIF", "heif": "HEIF", "avif": "AVIF",
}  # fmt: skip
FIELD_OPS = ("=", "~", "<", "<=", ">", ">=")


@dataclass
class FieldCondition:
    """A product-metadata condition: `field` equals (case-insensitively), contains (`~`), or
    compares (`<`, `<=`, `>`, `>=`, numerically where the value is a number) with `value`.

    `field` is one of META_FIELDS or the name of an extra column kept from an import.
    """

    field: str
    value: str
    contains: bool = False
    op: str = "="

    def __post_init__(self) -> None:
        if self.contains:
            self.op = "~"
        elif self.op == "~":
            self.contains = True
        if self.op not in FIELD_OPS:
            raise QueryError(
                f"unknown comparison {self.op!r} for {self.field}; use one of {' '.join(FIELD_OPS)}"
            )
        self.field = (
            self.field.strip().lower() if self.field.strip().lower() in META_FIELDS else self.field.strip()
        )
        if not self.field:
            raise QueryError("a metadata condition needs a field name")

    @property
    def is_extra(self) -> bool:
        return self.field not in META_FIELDS

    def to_sql(self) -> tuple[str, list[object]]:
        """A condition over `image_meta m` and its parameters."""
        if self.is_extra:
            column, params = "json_extract(m.extra, ?)", ['$."' + self.field.replace('"', '\\"') + '"']
        else:
            column, params = f"m.{self.field}", []
        number = _as_number(self.value)
        if self.op == "~":
            return f"{column} LIKE ? ESCAPE '\\'", [*params, "%" + _escape_like(self.value) + "%"]
        if self.field == "price" or (self.op != "=" and number is not None):
            if number is None:
                raise QueryError(f"{self.field} {self.op} {self.value!r}: the value must be a number")
            return f"CAST({column} AS REAL) {self.op} ?", [*params, number]
        if self.op == "=":
            if self.is_extra and number is not None:  # JSON keeps numbers as numbers
                return f"({column} = ? COLLATE NOCASE OR {column} = ?)", [
                    *params,
                    self.value,
                    *params,
                    number,
                ]
            return f"{column} = ? COLLATE NOCASE", [*params, self.value]
        return f"{column} {self.op} ? COLLATE NOCASE", [*params, self.value]


@dataclass
class Filters:
    """Narrowing conditions, all combined with AND; each list is OR within itself except tags_all."""

    folders: list[str] = field(default_factory=list)
    # Folder names anywhere in the path ("chairs", "furniture/chairs"), as typed in the query bar.
    folder_names: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    tags_all: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    fields: list[FieldCondition] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.folders or self.folder_names or self.tags_any or self.tags_all or self.types or self.fields
            or self.modified_after or self.modified_before
            or self.min_bytes is not None or self.max_bytes is not None
        )  # fmt: skip

    def on_files_only(self) -> bool:
        """Whether only the files' own attributes are filtered (no tags, no metadata)."""
        return not (self.tags_any or self.tags_all or self.fields)

    def to_sql(self) -> tuple[str, list[object]]:
        """A WHERE clause over `images i` (without the model condition) and its parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.folders:
            parts = []
            for folder in self.folders:
                low, high = subtree_bounds(folder)
                parts.append("(i.path >= ? AND i.path < ?)")
                params += [low, high]
            clauses.append("(" + " OR ".join(parts) + ")")
        if self.folder_names:
            parts = []
            for name in self.folder_names:
                parts.append("(i.path LIKE ? ESCAPE '\\' OR i.path LIKE ? ESCAPE '\\')")
                params += _component_patterns(name)
            clauses.append("(" + " OR ".join(parts) + ")")
        if self.tags_any:
            tags = [t.strip().lower() for t in self.tags_any]
            clauses.append(f"i.id IN (SELECT image_id FROM tags WHERE tag IN ({_marks(tags)}))")
            params += tags
        for tag in self.tags_all:
            clauses.append("i.id IN (SELECT image_id FROM tags WHERE tag = ?)")
            params.append(tag.strip().lower())
        if self.types:
            formats = sorted({format_name(t) for t in self.types})
            clauses.append(f"i.format IN ({_marks(formats)})")
            params += formats
        if self.modified_after:
            clauses.append("i.mtime_ns >= ?")
            params.append(int(self.modified_after.timestamp() * 1e9))
        if self.modified_before:
            clauses.append("i.mtime_ns < ?")
            params.append(int(self.modified_before.timestamp() * 1e9))
        if self.min_bytes is not None:
            clauses.append("i.size >= ?")
            params.append(self.min_bytes)
        if self.max_bytes is not None:
            clauses.append("i.size <= ?")
            params.append(self.max_bytes)
        for cond in self.fields:
            sql, cond_params = cond.to_sql()
            clauses.append(f"i.id IN (SELECT m.image_id FROM image_meta m WHERE {sql})")
            params += cond_params
        return " AND ".join(clauses) or "1", params

    def merged(self, other: Filters) -> Filters:
        """Both sets of conditions (AND): the query bar's filters on top of a panel's."""
        out = Filters()
        for name in ("folders", "folder_names", "tags_any", "tags_all", "types", "fields"):
            setattr(out, name, [*getattr(self, name), *getattr(other, name)])
        out.modified_after = _latest(self.modified_after, other.modified_after)
        out.modified_before = _earliest(self.modified_before, other.modified_before)
        out.min_bytes = _latest(self.min_bytes, other.min_bytes)
        out.max_bytes = _earliest(self.max_bytes, other.max_bytes)
        return out


def format_name(name: str) -> str:
    """Pillow's format name for a file type as users type it (jpg, .PNG, tiff)."""
    key = name.strip().lower().lstrip(".")
    if key in TYPE_ALIASES:
        return TYPE_ALIASES[key]
    raise QueryError(f"unknown file type {name!r}; use one of {', '.join(sorted(set(TYPE_ALIASES)))}")


def _component_patterns(name: str) -> list[str]:
    """LIKE patterns matching a folder name (or a/b path) as whole components, / or \\ separated."""
    clean = name.strip().strip("/\\")
    posix = "%/" + _escape_like(clean.replace("\\", "/")) + "/%"
    windows = "%\\\\" + _escape_like(clean.replace("/", "\\")) + "\\\\%"
    return [posix, windows]


def _as_number(text: str) -> float | None:
    try:
        number = float(str(text).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _latest(a, b):
    return b if a is None else a if b is None else max(a, b)


def _earliest(a, b):
    return b if a is None else a if b is None else min(a, b)


def _marks(items: list) -> str:
    return ",".join("?" * len(items))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

"""Product data in the catalog: the `image_meta` fields and extras, tags set by imports, the
names of imported extra columns, and which sidecar files were applied."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator

from visualfinder.catalog.records import META_FIELDS, path_from_db, path_to_db
from visualfinder.catalog.store import Catalog

META_EXTRA_FIELDS = "extra_fields"  # meta key: JSON list of the extra column names ever imported


def write_products(
    catalog: Catalog,
    conn: sqlite3.Connection,
    image_ids: Iterable[int],
    fields: dict[str, object],
    extra: dict[str, object],
    tags: list[str] | None,
    *,
    replace_tags: bool = False,
) -> None:
    """Inside a transaction: give these images the fields, extras and tags of one product row.

    `fields` replace the stored ones (None clears); fields not given are kept; extras are
    merged; tags (None: not given) are added, or replace the old ones with `replace_tags`.
    """
    ids = list(image_ids)
    for image_id in ids:
        write_fields(conn, image_id, fields, extra)
        if tags is not None:
            if replace_tags:
                conn.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            conn.executemany(
                "INSERT OR IGNORE INTO tags(image_id, tag) VALUES (?, ?)", [(image_id, t) for t in tags]
            )
    if extra:
        remember_extra_fields(conn, extra)
    catalog.enqueue_upserts(conn, ids)


def write_fields(
    conn: sqlite3.Connection, image_id: int, fields: dict[str, object], extra: dict[str, object]
) -> None:
    """Upsert one image's image_meta row: `fields` replace, `extra` merges (None removes a key)."""
    current = conn.execute("SELECT extra FROM image_meta WHERE image_id = ?", (image_id,)).fetchone()
    merged = json.loads(current[0]) if current and current[0] else {}
    for key, value in extra.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    columns = [name for name in META_FIELDS if name in fields]
    values = [fields[name] for name in columns]
    extra_json = json.dumps(merged, ensure_ascii=False, sort_keys=True) if merged else None
    names = ", ".join(["image_id", *columns, "extra"])
    marks = ", ".join("?" * (len(columns) + 2))
    updates = ", ".join([f"{c} = excluded.{c}" for c in columns] + ["extra = excluded.extra"])
    conn.execute(
        f"INSERT INTO image_meta({names}) VALUES ({marks}) ON CONFLICT(image_id) DO UPDATE SET {updates}",
        (image_id, *values, extra_json),
    )


def remember_extra_fields(conn: sqlite3.Connection, extra: Iterable[str]) -> None:
    """Record extra column names so the query bar knows `colour:red` is a filter."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_EXTRA_FIELDS,)).fetchone()
    known = set(json.loads(row[0])) if row else set()
    if set(extra) <= known:
        return
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (META_EXTRA_FIELDS, json.dumps(sorted(known | set(extra)), ensure_ascii=False)),
    )


def extra_fields(catalog: Catalog) -> set[str]:
    """The extra column names ever imported (filters the query bar accepts besides META_FIELDS)."""
    raw = catalog.meta(META_EXTRA_FIELDS)
    return set(json.loads(raw)) if raw else set()


def image_paths(catalog: Catalog) -> Iterator[tuple[int, str]]:
    """(id, path) of every image, for matching product rows by file name."""
    for image_id, db_path in catalog.conn.execute("SELECT id, path FROM images"):
        yield image_id, path_from_db(db_path)


def images_without_metadata(catalog: Catalog, sample: int = 20) -> tuple[int, list[str]]:
    """How many indexed images have no product data, and the first `sample` of their paths."""
    sql = "FROM images i WHERE i.status = 'ok' AND NOT EXISTS (SELECT 1 FROM image_meta m WHERE m.image_id = i.id)"
    count = catalog.conn.execute(f"SELECT COUNT(*) {sql}").fetchone()[0]
    paths = [
        path_from_db(r[0])
        for r in catalog.conn.execute(f"SELECT i.path {sql} ORDER BY i.path LIMIT ?", (sample,))
    ]
    return count, paths


def applied_sidecars(catalog: Catalog, paths: list[str]) -> dict[str, tuple[int, int]]:
    """The (size, mtime_ns) each of these sidecar files had when it was last applied."""
    state = {}
    for path in paths:
        row = catalog.conn.execute(
            "SELECT size, mtime_ns FROM sidecars WHERE path = ?", (path_to_db(path),)
        ).fetchone()
        if row:
            state[path] = (row[0], row[1])
    return state


def record_sidecar(catalog: Catalog, path: str, size: int, mtime_ns: int) -> None:
    """Remember that a sidecar file was applied as it is now (size, mtime)."""
    with catalog.transaction() as conn:
        conn.execute(
            """INSERT INTO sidecars(path, size, mtime_ns, applied_at) VALUES (?, ?, ?, ?)
               ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                   applied_at = excluded.applied_at""",
            (path_to_db(path), size, mtime_ns, time.time()),
        )

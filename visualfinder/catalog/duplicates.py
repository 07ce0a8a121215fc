"""Duplicate review in the catalog: the decisions users made about pairs ("not duplicates",
"keep both"), the perceptual fingerprints kept per content, and the rows a duplicate scan reads."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from visualfinder.catalog.filters import Filters
from visualfinder.catalog.records import path_from_db, sql_chunks
from visualfinder.catalog.store import Catalog
from visualfinder.errors import QueryError

DECISIONS = ("distinct", "keep_both")


def embedded_images(
    catalog: Catalog, model_key: str, filters: Filters
) -> Iterator[tuple[int, str, int, int, str | None, str | None, str | None]]:
    """(id, path, bytes, pixels, content hash, thumbnail, format) of the images with a vector of
    `model_key` that pass `filters`."""
    where, params = filters.to_sql()
    rows = catalog.conn.execute(
        f"""SELECT i.id, i.path, i.size, COALESCE(i.width * i.height, 0), i.content_hash, i.thumb_path,
                   i.format
            FROM images i JOIN embeddings e ON e.image_id = i.id AND e.model_key = ?
            WHERE i.status = 'ok' AND ({where})""",
        (model_key, *params),
    )
    for r in rows:
        yield (r[0], path_from_db(r[1]), *r[2:])


def stored_fingerprints(catalog: Catalog, content_hashes: Iterable[str]) -> dict[str, bytes]:
    """The stored fingerprints of these contents (content hash -> hashes); missing ones are left out."""
    found: dict[str, bytes] = {}
    for part in sql_chunks(sorted(set(content_hashes))):
        marks = ",".join("?" * len(part))
        found.update(catalog.conn.execute(
            f"SELECT content_hash, hashes FROM fingerprints WHERE content_hash IN ({marks})", part
        ).fetchall())  # fmt: skip
    return found


def save_fingerprints(catalog: Catalog, prints: dict[str, bytes]) -> None:
    """Keep new fingerprints (content hash -> hashes); drop those of content no image has any more."""
    with catalog.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO fingerprints(content_hash, hashes) VALUES (?, ?)", list(prints.items())
        )
        conn.execute(
            "DELETE FROM fingerprints WHERE content_hash NOT IN "
            "(SELECT content_hash FROM images WHERE content_hash IS NOT NULL)"
        )


def decided_pairs(catalog: Catalog) -> list[tuple[int, int]]:
    """Every pair of image ids with a remembered decision."""
    return catalog.conn.execute("SELECT id_a, id_b FROM duplicate_decisions").fetchall()


def record_decision(catalog: Catalog, ids: Iterable[int], decision: str) -> int:
    """Remember that these images are not duplicates of each other (every pair among them)."""
    if decision not in DECISIONS:
        raise QueryError(f"unknown decision {decision!r}; use one of {', '.join(DECISIONS)}")
    unique = sorted(set(ids))
    if len(unique) < 2:
        raise QueryError("a decision needs at least two different images")
    pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i + 1 :]]
    now = time.time()
    with catalog.transaction() as conn:
        conn.executemany(
            """INSERT INTO duplicate_decisions(id_a, id_b, decision, decided_at) VALUES (?, ?, ?, ?)
               ON CONFLICT(id_a, id_b) DO UPDATE SET decision = excluded.decision, decided_at = excluded.decided_at""",
            [(a, b, decision, now) for a, b in pairs],
        )
    return len(pairs)


def forget_decisions(catalog: Catalog, ids: Iterable[int] | None = None) -> int:
    """Forget the decisions among these images (all decisions when `ids` is None)."""
    with catalog.transaction() as conn:
        if ids is None:
            return conn.execute("DELETE FROM duplicate_decisions").rowcount
        unique = sorted(set(ids))
        pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i + 1 :]]
        return sum(
            conn.execute("DELETE FROM duplicate_decisions WHERE id_a = ? AND id_b = ?", pair).rowcount
            for pair in pairs
        )


@dataclass(frozen=True)
class Decision:
    path_a: str
    path_b: str
    decision: str
    decided_at: float

    def to_json(self) -> dict:
        return {"a": self.path_a, "b": self.path_b, "decision": self.decision, "decided_at": self.decided_at}


def list_decisions(catalog: Catalog) -> list[Decision]:
    rows = catalog.conn.execute(
        """SELECT a.path, b.path, d.decision, d.decided_at FROM duplicate_decisions d
           JOIN images a ON a.id = d.id_a JOIN images b ON b.id = d.id_b ORDER BY a.path, b.path"""
    )
    return [Decision(path_from_db(r[0]), path_from_db(r[1]), r[2], r[3]) for r in rows]

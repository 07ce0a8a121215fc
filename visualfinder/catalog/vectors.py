"""The catalog's vectors: one float16 blob per (image, model key) in the `embeddings` table,
from which the vector index is built and rebuilt. A part of `catalog.Catalog` (it inherits this).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from visualfinder.catalog.records import (
    SQL_CHUNK,
    blob_to_embedding,
    embedding_to_blob,
    path_from_db,
    sql_chunks,
)


class VectorStore:
    """Mixed into catalog.Catalog (which provides `conn`, `transaction()` and `generation`)."""

    # Invariant kept by apply(): only 'ok' images have embeddings, so these counts and id
    # lists are answered from the embeddings table (and its model_key index) alone.

    def count_embedded(self, model_key: str) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM embeddings WHERE model_key = ?", (model_key,)
        ).fetchone()[0]

    def embedded_ids(self, model_key: str) -> np.ndarray:
        rows = self.conn.execute(
            "SELECT image_id FROM embeddings WHERE model_key = ? ORDER BY image_id", (model_key,)
        )
        return np.fromiter((r[0] for r in rows), dtype=np.uint64)

    def iter_embeddings(
        self, model_key: str, min_generation: int = 0, ids: Iterable[int] | None = None, chunk: int = 8192
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, float16 vectors) chunks of rows embedded with `model_key`.

        `min_generation` keeps only vectors written at or after that generation; `ids` keeps
        only those rows.
        """
        if ids is not None:
            id_list = list(ids)
            for part in sql_chunks(id_list, SQL_CHUNK):
                marks = ",".join("?" * len(part))
                rows = self.conn.execute(
                    f"""SELECT image_id, vector FROM embeddings
                        WHERE model_key = ? AND image_id IN ({marks}) ORDER BY image_id""",
                    (model_key, *part),
                ).fetchall()
                if rows:
                    yield _stack(rows)
            return
        if min_generation > 0:
            cursor = self.conn.execute(
                """SELECT image_id, vector FROM embeddings WHERE model_key = ? AND vector_gen >= ?
                   ORDER BY image_id""",
                (model_key, min_generation),
            )
        else:
            cursor = self.conn.execute(
                "SELECT image_id, vector FROM embeddings WHERE model_key = ? ORDER BY image_id", (model_key,)
            )
        while rows := cursor.fetchmany(chunk):
            yield _stack(rows)

    def embedding_of(self, image_id: int, model_key: str) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT vector FROM embeddings WHERE image_id = ? AND model_key = ?", (image_id, model_key)
        ).fetchone()
        return blob_to_embedding(row[0]).astype(np.float32) if row else None

    def model_counts(self) -> dict[str, int]:
        """Stored vectors per model key (the active model, a switch in progress, older models)."""
        rows = self.conn.execute(
            "SELECT model_key, COUNT(*) FROM embeddings GROUP BY model_key ORDER BY model_key"
        )
        return {r[0]: r[1] for r in rows}

    def delete_embeddings(self, model_key: str) -> int:
        with self.transaction() as conn:
            return conn.execute("DELETE FROM embeddings WHERE model_key = ?", (model_key,)).rowcount

    def images_missing_embedding(
        self, model_key: str, after_id: int = 0, limit: int = 256
    ) -> list[tuple[int, str, str | None]]:
        """(id, path, content hash) of 'ok' images without a `model_key` vector, by id after `after_id`."""
        rows = self.conn.execute(
            """SELECT i.id, i.path, i.content_hash FROM images i
               WHERE i.status = 'ok' AND i.id > ? AND NOT EXISTS
                   (SELECT 1 FROM embeddings e WHERE e.image_id = i.id AND e.model_key = ?)
               ORDER BY i.id LIMIT ?""",
            (after_id, model_key, limit),
        )
        return [(r[0], path_from_db(r[1]), r[2]) for r in rows]

    def put_embeddings(self, model_key: str, rows: Iterable[tuple[int, str | None, np.ndarray]]) -> int:
        """Store vectors computed from (id, content hash, vector); a row whose content changed
        since the vector was computed is skipped. Returns how many were stored."""
        stored = 0
        with self.transaction() as conn:
            generation = self.generation
            for image_id, digest, vector in rows:
                stored += conn.execute(
                    """INSERT INTO embeddings(image_id, model_key, vector, vector_gen)
                       SELECT id, ?, ?, ? FROM images WHERE id = ? AND status = 'ok' AND content_hash IS ?
                       ON CONFLICT(image_id, model_key) DO UPDATE SET vector = excluded.vector,
                           vector_gen = excluded.vector_gen""",
                    (model_key, embedding_to_blob(vector), generation, image_id, digest),
                ).rowcount
        return stored

    def copy_embeddings_from_twins(self, model_key: str) -> int:
        """Give images without a `model_key` vector the one of an identical file that has it."""
        with self.transaction() as conn:
            return conn.execute(
                """INSERT OR IGNORE INTO embeddings(image_id, model_key, vector, vector_gen)
                   SELECT i.id, e.model_key, e.vector, e.vector_gen
                   FROM images i
                   JOIN images t ON t.content_hash = i.content_hash AND t.id != i.id
                   JOIN embeddings e ON e.image_id = t.id AND e.model_key = ?
                   WHERE i.status = 'ok' AND i.content_hash IS NOT NULL AND NOT EXISTS
                       (SELECT 1 FROM embeddings x WHERE x.image_id = i.id AND x.model_key = ?)
                   GROUP BY i.id""",
                (model_key, model_key),
            ).rowcount


def _stack(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
    vectors = np.vstack([blob_to_embedding(r[1]) for r in rows])
    return ids, vectors

"""QueryEncoder: query terms into one query vector, and the query-image decoding the front ends share.

An image file, a URL, image data (an upload, a paste), a decoded image, a text or an indexed
image each become a unit vector of the model that answers; `combine` sums them (+1 more like
this, -1 less like this). A library without a local catalog (the HTTP API over OpenSearch
alone) has no indexed images to match, and says so.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from visualfinder.catalog.store import Catalog
from visualfinder.config import Settings
from visualfinder.errors import ImageDecodeError, QueryError
from visualfinder.models.embedder import Embedder
from visualfinder.paths import normalise
from visualfinder.search.planner import combine
from visualfinder.search.request import QueryTerm

if TYPE_CHECKING:  # PIL and the decoders load with the first query image: a text query needs neither
    from visualfinder.ingest.imaging import DecodedImage


class QueryEncoder:
    """Turns query terms into vectors with a given embedder (the engine's that answers)."""

    def __init__(self, settings: Settings, catalog: Catalog | None):
        self.settings = settings
        self.catalog = catalog

    def query_vector(self, terms: list[QueryTerm], embedder: Embedder, model_key: str) -> np.ndarray:
        """The terms combined into one unit query vector."""
        vectors = [self.term_vector(term, embedder, model_key) for term in terms]
        return combine(vectors, [term.weight for term in terms])

    def term_vector(self, term: QueryTerm, embedder: Embedder, model_key: str) -> np.ndarray:
        if term.kind == "text":
            text = str(term.value).strip()
            if not text:
                raise QueryError("the text query is empty")
            return embedder.embed_texts([text])[0]
        if term.kind == "similar":
            return self.indexed_vector(term.value, model_key)
        if term.kind == "vector":
            vector = np.asarray(term.value, dtype=np.float32).ravel()
            if vector.shape != (embedder.dim,):
                raise QueryError(f"a query vector must have {embedder.dim} values, not {vector.size}")
            return vector
        if term.kind == "image":
            decoded = self.decode_image_file(term.value, embedder)
        elif term.kind == "url":
            decoded = self.fetch_image(str(term.value), embedder)
        elif term.kind == "bytes":
            decoded = self.decode_image_bytes(term.value, "the image data", embedder)
        elif term.kind == "pil":
            from visualfinder.ingest.imaging import DecodedImage

            image = term.value.convert("RGB")
            decoded = DecodedImage(image, image.size[0], image.size[1], "query")
        else:
            raise QueryError(f"unknown query term kind {term.kind!r}")
        if term.crop is not None:
            from visualfinder.ingest.imaging import crop_region

            try:
                decoded = crop_region(decoded, term.crop)
            except ImageDecodeError as exc:
                raise QueryError(f"cannot crop the query image: {exc.reason}") from exc
        return embedder.embed_images([decoded.image])[0]

    def indexed_vector(self, ref: object, model_key: str) -> np.ndarray:
        """The stored vector of an indexed image, by id or by path."""
        if self.catalog is None:
            raise QueryError("searching by an indexed image needs the library's catalog")
        if isinstance(ref, (int, np.integer)):
            image_id = int(ref)
        else:
            image_id = self.catalog.id_for_path(normalise(ref))
            if image_id is None:
                raise QueryError(f"{ref} is not in the library; index its folder first or search by image")
        vector = self.catalog.embedding_of(image_id, model_key)
        if vector is None:
            raise QueryError(f"{ref} has no embedding (it could not be decoded, or awaits re-indexing)")
        return vector

    # --- query images --------------------------------------------------------------------

    def fetch_image(self, url: str, embedder: Embedder, min_side: int | None = None) -> DecodedImage:
        """Download a query image (size limit, timeout and content-type check) and decode it."""
        from visualfinder.ingest.fetch import fetch_image

        s = self.settings
        data = fetch_image(url, max_bytes=s.url_max_bytes, timeout=s.url_timeout_s)
        return self.decode_image_bytes(data, url, embedder, min_side)

    def decode_image_file(
        self, path: str | os.PathLike, embedder: Embedder, min_side: int | None = None
    ) -> DecodedImage:
        """Decode a query image file; `min_side` asks for more pixels than the model needs (display)."""
        from visualfinder.ingest.imaging import decode_file

        try:
            return decode_file(
                path, min_side=max(min_side or 0, self._decode_side(embedder)),
                max_pixels=self.settings.max_image_pixels,
            )  # fmt: skip
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {path} as a query image: {exc.reason}") from exc

    def decode_image_bytes(
        self, data: bytes, name: str, embedder: Embedder, min_side: int | None = None
    ) -> DecodedImage:
        """Decode query image data that is not a file (pasted, dropped from a browser, uploaded,
        downloaded) with the indexing limits; `name` says where it came from in the error."""
        from visualfinder.ingest.imaging import decode_image

        try:
            return decode_image(
                data, min_side=max(min_side or 0, self._decode_side(embedder)),
                max_pixels=self.settings.max_image_pixels, path=name,
            )  # fmt: skip
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {name} as a query image: {exc.reason}") from exc

    def _decode_side(self, embedder: Embedder) -> int:
        from visualfinder.ingest.imaging import library_decode_side

        return library_decode_side(embedder.image_size, self.settings.thumbnail_size)

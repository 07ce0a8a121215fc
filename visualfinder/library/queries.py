"""The Library's query terms: what turns an image file, a URL, pasted image data, a text or an
indexed image into a query vector, and the query image decoding the app shares.

A part of `service.Library` (it inherits this class), like library_catalog.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from visualfinder.errors import ImageDecodeError, QueryError
from visualfinder.ingest.fetch import fetch_image
from visualfinder.ingest.imaging import (
    DecodedImage,
    crop_region,
    decode_file,
    decode_image,
    library_decode_side,
)
from visualfinder.models.embedder import Embedder

if TYPE_CHECKING:
    from visualfinder.library.facade import _Engine


@dataclass
class QueryTerm:
    """One part of a query. `kind`: image (file path), url (http/https image), pil (decoded
    image), text, similar (an indexed image by path or id).

    weight +1 means "more like this", -1 "less like this". `crop` is (x, y, w, h) in pixels or
    fractions of the image.
    """

    kind: str
    value: object
    weight: float = 1.0
    crop: tuple[float, float, float, float] | None = None


class QueryFeatures:
    """Mixed into service.Library."""

    def query_vector(self, term: QueryTerm) -> np.ndarray:
        """The embedding of one query term by the active model."""
        return self._query_vector(term, self._engine)

    def _query_vector(self, term: QueryTerm, engine: _Engine) -> np.ndarray:
        if term.kind == "text":
            text = str(term.value).strip()
            if not text:
                raise QueryError("the text query is empty")
            return engine.embedder.embed_texts([text])[0]
        if term.kind == "similar":
            return self._indexed_vector(term.value, engine.model.key)
        if term.kind == "image":
            decoded = self.decode_query_image(term.value, engine.embedder)
        elif term.kind == "url":
            decoded = self.fetch_query_image(str(term.value), engine.embedder)
        elif term.kind == "pil":
            image = term.value.convert("RGB")
            decoded = DecodedImage(image, image.size[0], image.size[1], "query")
        else:
            raise QueryError(f"unknown query term kind {term.kind!r}")
        if term.crop is not None:
            try:
                decoded = crop_region(decoded, term.crop)
            except ImageDecodeError as exc:
                raise QueryError(f"cannot crop the query image: {exc.reason}") from exc
        return engine.embedder.embed_images([decoded.image])[0]

    def fetch_query_image(
        self, url: str, embedder: Embedder | None = None, min_side: int | None = None
    ) -> DecodedImage:
        """Download a query image (size limit, timeout and content-type check) and decode it."""
        s = self.settings
        data = fetch_image(url, max_bytes=s.url_max_bytes, timeout=s.url_timeout_s)
        return self.decode_query_bytes(data, url, embedder, min_side)

    def _decode_side(self, embedder: Embedder | None) -> int:
        return library_decode_side((embedder or self.embedder).image_size, self.settings.thumbnail_size)

    def decode_query_image(
        self, path: str | os.PathLike, embedder: Embedder | None = None, min_side: int | None = None
    ) -> DecodedImage:
        """Decode a query image file; `min_side` asks for more pixels than the model needs (display)."""
        try:
            return decode_file(
                path,
                min_side=max(min_side or 0, self._decode_side(embedder)),
                max_pixels=self.settings.max_image_pixels,
            )
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {path} as a query image: {exc.reason}") from exc

    def decode_query_bytes(
        self, data: bytes, name: str, embedder: Embedder | None = None, min_side: int | None = None
    ) -> DecodedImage:
        """Decode query image data that is not a file (pasted, dropped from a browser, downloaded);
        `name` says where it came from in the error message."""
        try:
            return decode_image(
                data,
                min_side=max(min_side or 0, self._decode_side(embedder)),
                max_pixels=self.settings.max_image_pixels,
                path=name,
            )
        except ImageDecodeError as exc:
            raise QueryError(f"cannot use {name} as a query image: {exc.reason}") from exc

    def _indexed_vector(self, ref: object, key: str | None = None) -> np.ndarray:
        """The stored vector of an indexed image, by id or by path."""
        if isinstance(ref, (int, np.integer)):
            image_id = int(ref)
        else:
            full = os.path.abspath(os.path.expanduser(os.fspath(ref)))
            image_id = self.catalog.id_for_path(full)
            if image_id is None:
                raise QueryError(f"{ref} is not in the library; index its folder first or search by image")
        vector = self.catalog.embedding_of(image_id, key or self.model_key)
        if vector is None:
            raise QueryError(f"{ref} has no embedding (it could not be decoded, or awaits re-indexing)")
        return vector

"""Searches as the front ends make them: request records built from an image, a query-bar text
or a term, sent through `Library.search` (tests keep no entry point of their own in the core)."""

from __future__ import annotations

import os

import numpy as np

from visualfinder.library.facade import Library
from visualfinder.search.planner import SearchResult
from visualfinder.search.request import QueryTerm, SearchRequest, SearchResponse


def search_image(
    library: Library, path: str | os.PathLike, k: int = 20, **request: object
) -> list[SearchResult]:
    """Results for one query image file, as the CLI's `search IMAGE` asks."""
    return library.search(SearchRequest([QueryTerm("image", path)], k, **request)).results


def search_query(library: Library, text: str, k: int = 20) -> SearchResponse:
    """Results for query-bar text (`folder:chairs tag:oak red armchair`), as the app asks."""
    parsed = library.parse_query(text)
    return library.search(SearchRequest(parsed.terms(), k=k, filters=parsed.filters))


def query_vector(library: Library, term: QueryTerm) -> np.ndarray:
    """The unit vector the active model makes of one query term."""
    return library.queries.query_vector([term], library.embedder, library.model_key)

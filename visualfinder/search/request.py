"""What a search asks and what it answers: query terms, the request, the response.

The words of every front end (the CLI's options, the app's query panel, the HTTP API's fields)
become these records, and `Library.search` takes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from visualfinder.catalog.filters import Filters
from visualfinder.search.planner import Plan, SearchResult

TERM_KINDS = ("image", "url", "pil", "bytes", "text", "similar", "vector")


@dataclass
class QueryTerm:
    """One part of a query. `kind`: image (file path), url (http/https image), pil (decoded
    image), bytes (image data that is not a file: an upload, a paste), text, similar (an indexed
    image by path or id), vector (already embedded by the engine's model: the HTTP API embeds
    the queries waiting for the model in one batch).

    weight +1 means "more like this", -1 "less like this". `crop` is (x, y, w, h) in pixels or
    fractions of the image.
    """

    kind: str
    value: object
    weight: float = 1.0
    crop: tuple[float, float, float, float] | None = None


@dataclass
class SearchRequest:
    terms: list[QueryTerm]
    k: int = 20
    filters: Filters = field(default_factory=Filters)
    exact: bool = False
    # Search the OpenSearch index this library syncs to, instead of the local index.
    remote: bool = False


@dataclass
class SearchResponse:
    results: list[SearchResult]
    plan: Plan
    seconds: float

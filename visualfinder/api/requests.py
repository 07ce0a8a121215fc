"""Search bodies (JSON or multipart) into the one `SearchRequest` every front end builds.

Images are fetched and decoded here, on the request's worker thread with the indexing limits,
so only the model's work waits in the gate; query-bar text and filters go through the same
parser as the CLI's `--query` and the app's query bar.
"""

from __future__ import annotations

import math

from visualfinder.api.errors import ApiError
from visualfinder.api.schemas import SearchBody, SearchFilters
from visualfinder.catalog.filters import Filters
from visualfinder.errors import ImageDecodeError, QueryError
from visualfinder.ingest.fetch import is_url
from visualfinder.ingest.imaging import DecodedImage, crop_region
from visualfinder.paths import normalise
from visualfinder.search.query_bar import field_conditions, parse_date
from visualfinder.search.request import QueryTerm, SearchRequest

MAX_K = 1000


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def filters_from(body: SearchFilters | None) -> Filters:
    if body is None:
        return Filters()
    fields = []
    for name, value in (body.where or {}).items():
        fields += field_conditions(name.strip().lower(), str(value))
    return Filters(
        folders=[normalise(f) for f in _listed(body.folder)], tags_all=_listed(body.tag),
        tags_any=list(body.any_tag or []), types=_listed(body.type),
        modified_after=parse_date(body.after, "after") if body.after else None,
        modified_before=parse_date(body.before, "before") if body.before else None, fields=fields,
    )  # fmt: skip


def image_term(decoded: DecodedImage, weight: float = 1.0, crop=None) -> QueryTerm:
    """A decoded query image as a term; `crop` is [x0, y0, x1, y1] (pixels or fractions)."""
    if crop is not None:
        x0, y0, x1, y1 = (float(v) for v in crop)
        if x1 <= x0 or y1 <= y0:
            raise QueryError("crop must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
        try:
            decoded = crop_region(decoded, (x0, y0, x1 - x0, y1 - y0))
        except ImageDecodeError as exc:
            raise QueryError(f"cannot crop the query image: {exc.reason}") from exc
    return QueryTerm("pil", decoded.image, weight=weight)


class RequestBuilder:
    """Builds SearchRequests against one service (its query-bar fields, decoder and fetcher)."""

    def __init__(self, service):
        self.service = service

    def _texts(self, texts: list[str], weight: float, terms: list[QueryTerm]) -> Filters:
        filters = Filters()
        for text in texts:
            if weight > 0:
                parsed = self.service.parse_query(text)
                filters = filters.merged(parsed.filters)
                terms += parsed.terms()
            elif text.strip():
                terms.append(QueryTerm("text", text, weight=weight))
        return filters

    def _check_term_count(self, count: int) -> None:
        """Thousands of texts or URLs in one body would hold the model thread (and fetch every
        URL) for every client: counted before anything is fetched or decoded."""
        limit = self.service.settings.api_max_query_terms
        if count > limit:
            raise ApiError(
                422, "invalid_request",
                f"too many query terms ({count}): at most {limit} images, texts and minus terms per search",
            )  # fmt: skip

    def from_json(self, body: SearchBody) -> tuple[SearchRequest, float | None]:
        self._check_term_count(
            bool(body.image_url) + bool(body.q) + len(_listed(body.text)) + (body.similar_to is not None)
            + len(body.minus or [])
        )  # fmt: skip
        terms: list[QueryTerm] = []
        if body.crop is not None and not body.image_url:
            raise QueryError("crop needs an image_url")
        if body.image_url:
            terms.append(image_term(self.service.fetch_query_image(body.image_url), crop=body.crop))
        filters = self._texts([*([body.q] if body.q else []), *_listed(body.text)], 1.0, terms)
        if body.similar_to is not None:
            terms.append(QueryTerm("similar", int(body.similar_to)))
        for item in body.minus or []:
            if isinstance(item, int):
                terms.append(QueryTerm("similar", item, weight=-1.0))
            elif is_url(item):
                terms.append(image_term(self.service.fetch_query_image(item), weight=-1.0))
            else:
                self._texts([item], -1.0, terms)
        filters = filters.merged(filters_from(body.filters))
        return self._request(terms, filters, body.k, body.remote, body.exact), body.threshold

    def from_form(self, form) -> tuple[SearchRequest, float | None]:
        """multipart/form-data: image (files, repeatable), text, minus_text, q, k, threshold, remote."""
        self._check_term_count(sum(len(form.getlist(f)) for f in ("image", "q", "text", "minus_text")))
        terms: list[QueryTerm] = []
        for upload in form.getlist("image"):
            if isinstance(upload, str):
                raise QueryError(
                    "the image field must be a file upload (use image_url in a JSON body for URLs)"
                )
            name = upload.filename or "the uploaded image"
            data = upload.file.read()
            terms.append(image_term(self.service.decode_query_bytes(data, name)))
        texts = [t for t in (*form.getlist("q"), *form.getlist("text")) if isinstance(t, str) and t.strip()]
        filters = self._texts(texts, 1.0, terms)
        self._texts([t for t in form.getlist("minus_text") if isinstance(t, str)], -1.0, terms)
        k = _number(form.get("k"), "k", int, 20)
        threshold = _number(form.get("threshold"), "threshold", float, None)
        remote = str(form.get("remote", "")).lower() in ("1", "true", "yes", "on")
        return self._request(terms, filters, k, remote, False), threshold

    def _request(self, terms, filters: Filters, k: int, remote: bool, exact: bool) -> SearchRequest:
        if not 1 <= k <= MAX_K:
            raise ApiError(422, "invalid_request", f"k must be between 1 and {MAX_K}")
        if terms and all(t.weight < 0 for t in terms):
            raise QueryError("minus terms need something to search for: an image, a text or similar_to")
        if not terms and filters.is_empty():
            raise QueryError("nothing to search for: give an image, image_url, text, q or similar_to")
        return SearchRequest(
            terms, k=k, filters=filters, exact=exact, remote=remote or self.service.remote_only
        )


def _number(value, name: str, kind, default):
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ApiError(422, "invalid_request", f"{name} must be a number, not {value!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ApiError(422, "invalid_request", f"{name} must be a finite number")
    return number

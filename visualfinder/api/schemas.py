"""The API's request and response models: the contract, also published at /openapi.json."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchFilters(_Strict):
    """Narrow the search; each list is OR within itself, the fields are ANDed."""

    folder: str | list[str] | None = Field(None, description="only images below this catalog folder")
    tag: str | list[str] | None = Field(None, description="only images with all of these tags")
    any_tag: list[str] | None = Field(None, description="only images with any of these tags")
    type: str | list[str] | None = Field(None, description="file types: jpg, png, ...")
    after: str | None = Field(None, description="modified on or after: 2025, 2025-01, 2025-01-31, 7d")
    before: str | None = Field(None, description="modified before this date")
    where: dict[str, str | float | int] | None = Field(
        None,
        description='product fields, as the query bar: {"sku": "AB-12", "title": "~chair", "price": "<100"}',
    )


class SearchBody(_Strict):
    """`POST /api/v1/search` as JSON. Give at least one of image_url, text, similar_to, q."""

    image_url: str | None = Field(None, description="an http(s) image to match (public addresses only)")
    text: str | list[str] | None = Field(
        None, description="describe what to find (query-bar filters work too)"
    )
    similar_to: int | None = Field(None, description="an indexed image's id")
    minus: list[str | int] | None = Field(
        None, description="less like these: texts, image URLs, or indexed image ids"
    )
    q: str | None = Field(None, description='query-bar text: "tag:oak red armchair"')
    k: int = Field(20, ge=1, le=1000)
    threshold: float | None = Field(None, description="leave out results whose score is below this")
    filters: SearchFilters | None = None
    crop: list[float] | None = Field(
        None, min_length=4, max_length=4, description="[x0, y0, x1, y1] of image_url, pixels or fractions"
    )
    remote: bool = Field(False, description="search the OpenSearch index this library syncs to")
    exact: bool = False


class Result(BaseModel):
    rank: int
    id: int
    path: str | None = Field(description="the file (its name alone when the server hides paths)")
    score: float | None
    distance: float | None
    title: str | None
    tags: list[str]
    description: str | None
    sku: str | None
    url: str | None
    price: float | None
    width: int | None
    height: int | None
    thumbnail_url: str | None
    extra: dict[str, Any] = {}
    doc_id: str | None = None


class SearchAnswer(BaseModel):
    results: list[Result]
    took_ms: float
    plan: str = Field(description='"exact", "hnsw", "filter" (no query vector) or "remote"')
    method: str = Field(description="exact / hnsw / filter, also for remote searches")
    candidates: int


class FolderBody(_Strict):
    path: str
    watch: bool = False


class JobCreated(BaseModel):
    job: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorDetail


ERRORS = {
    status: {"model": ErrorAnswer, "description": what}
    for status, what in {
        400: "bad query", 401: "missing or wrong token", 404: "no such image, folder or job",
        413: "body or image too large", 415: "not an image", 422: "invalid request",
        429: "queue full (Retry-After)", 503: "overloaded, empty library or cluster down",
    }.items()
}  # fmt: skip

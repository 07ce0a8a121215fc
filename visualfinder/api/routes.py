"""The endpoints under /api/v1: thin over ApiService, which is thin over the Library."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from visualfinder.api.errors import ApiError
from visualfinder.api.requests import RequestBuilder
from visualfinder.api.schemas import ERRORS, FolderBody, JobCreated, SearchAnswer, SearchBody
from visualfinder.api.service import ApiService
from visualfinder.errors import ImageNotFoundError, QueryError
from visualfinder.search.request import QueryTerm, SearchRequest

_SHEET_SUFFIXES = {".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson"}
_SHEET_TYPES = {"text/csv": ".csv", "application/json": ".json", "application/x-ndjson": ".jsonl",
                "application/jsonl": ".jsonl", "text/tab-separated-values": ".tsv"}  # fmt: skip

_SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchBody"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "text": {"type": "string"}, "minus_text": {"type": "string"}, "q": {"type": "string"},
                "k": {"type": "integer", "default": 20}, "threshold": {"type": "number"},
                "remote": {"type": "boolean"},
            }}},
        },
    }
}  # fmt: skip


def build_router(service: ApiService, auth) -> APIRouter:
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], responses=ERRORS)
    builder = RequestBuilder(service)

    async def run_search(request: SearchRequest, threshold: float | None, as_csv: bool) -> Response:
        embedded = await service.gate.run(request)  # the model's work, batched with others
        response = await run_in_threadpool(service.search, embedded)
        results = response.results
        if threshold is not None:
            results = [r for r in results if r.ranked and r.score >= threshold]
        if as_csv:
            return Response(service.results_csv(results), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="results.csv"'})  # fmt: skip
        return JSONResponse(service.search_json(response, results))

    def wants_csv(request: Request, format: str | None) -> bool:
        if format is not None:
            if format.lower() not in ("csv", "json"):
                raise ApiError(422, "invalid_request", "format must be json or csv")
            return format.lower() == "csv"
        return "text/csv" in request.headers.get("accept", "").lower()

    @router.get("/status", summary="what the library holds, its model, index and folders")
    async def status() -> dict:
        return await run_in_threadpool(service.status_json)

    @router.post("/search", response_model=SearchAnswer, openapi_extra=_SEARCH_BODY,
                 summary="search by images, texts, an indexed image and filters (JSON or multipart)")  # fmt: skip
    async def search(request: Request, format: str | None = Query(None, description="csv or json")):
        as_csv = wants_csv(request, format)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            # More files than terms would be refused by the term count; Starlette stops at this.
            form = await _read_form(request, service.settings.api_max_query_terms, 64)
            try:
                built, threshold = await run_in_threadpool(builder.from_form, form)
            finally:
                await form.close()
        elif kind in ("application/json", ""):
            try:
                body = SearchBody.model_validate_json(await request.body() or b"{}")
            except ValidationError as exc:
                raise ApiError(422, "invalid_request", _pydantic_message(exc)) from None
            built, threshold = await run_in_threadpool(builder.from_json, body)
        else:
            raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
        return await run_search(built, threshold, as_csv)

    @router.get("/images/{image_id}", summary="an image's record: file facts, product fields, tags")
    async def image(image_id: int) -> dict:
        library = service.require_library()
        return service.record_json(await run_in_threadpool(_record, library, image_id))

    @router.get("/images/{image_id}/thumbnail", summary="the image's thumbnail (JPEG or PNG), with an ETag",
                response_class=Response, responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})  # fmt: skip
    async def thumbnail(image_id: int, request: Request):
        library = service.require_library()
        record = await run_in_threadpool(_record, library, image_id)
        path = Path(record.thumb_path) if record.thumb_path else None
        if path is not None and not path.is_absolute():
            path = library.thumbs_dir / path
        if path is None or not path.is_file():
            raise ApiError(404, "not_found", f"image {image_id} has no thumbnail (it could not be decoded)")
        head = await run_in_threadpool(_head, path)
        media = "image/png" if head.startswith(b"\x89PNG") else "image/jpeg"
        etag = '"' + (record.content_hash or hashlib.sha1(str(path).encode()).hexdigest()) + '"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return FileResponse(path, media_type=media, headers=headers)

    @router.get("/images/{image_id}/similar", response_model=SearchAnswer,
                summary="the images most like an indexed image")  # fmt: skip
    async def similar(request: Request, image_id: int, k: int = Query(20, ge=1, le=1000),
                      format: str | None = None):  # fmt: skip
        service.require_library()
        as_csv = wants_csv(request, format)
        return await run_search(SearchRequest([QueryTerm("similar", image_id)], k=k), None, as_csv)

    @router.post("/folders", status_code=202, response_model=JobCreated,
                 summary="add a catalog folder and index it in the background")  # fmt: skip
    async def add_folder(body: FolderBody):
        jobs = _jobs(service)
        job = await run_in_threadpool(jobs.start, body.path, body.watch)
        return JSONResponse({"job": job.id}, status_code=202, headers={"Location": f"/api/v1/jobs/{job.id}"})

    @router.get("/jobs/{job_id}", summary="an indexing job's progress and, once done, its report")
    async def job(job_id: str) -> dict:
        found = _jobs(service).get(job_id)
        if found is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        return found.to_json(service.expose_paths)

    @router.delete("/folders", summary="forget a catalog folder and its images (files are not touched)")
    async def remove_folder(path: str = Query(..., description="the catalog folder")) -> dict:
        library = service.require_library()
        removed = await run_in_threadpool(library.remove_folder, path)
        return {"removed": removed}

    @router.post("/metadata", summary="import a product sheet (CSV, JSON, JSON Lines), as import-metadata")
    async def metadata(request: Request, replace_tags: bool = False, dry_run: bool = False) -> dict:
        library = service.require_library()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            form = await _read_form(request, 1, 8)
            try:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise QueryError("send the product sheet as the multipart file field 'file'")
                name = upload.filename or "products.csv"
                data = await upload.read()
            finally:
                await form.close()
        elif kind in _SHEET_TYPES:
            name, data = "products" + _SHEET_TYPES[kind], await request.body()
        else:
            raise ApiError(415, "unsupported_media_type", "send a CSV, JSON or JSON Lines product sheet")
        suffix = Path(name).suffix.lower()
        if suffix not in _SHEET_SUFFIXES:
            raise ApiError(415, "unsupported_media_type", f"{name}: use a .csv, .json or .jsonl file")
        report = await run_in_threadpool(_import_sheet, library, data, suffix, replace_tags, dry_run)
        return {**report.to_json(), "source": os.path.basename(name)}

    return router


def _record(library, image_id: int):
    try:
        return library.record(image_id)
    except QueryError as exc:
        raise ImageNotFoundError(f"no image {image_id} in the library") from exc


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(8)


def _jobs(service: ApiService):
    service.require_library()
    return service.jobs


def _import_sheet(library, data: bytes, suffix: str, replace_tags: bool, dry_run: bool):
    """The same importer as `import-metadata`, from a temporary copy of the upload."""
    with tempfile.TemporaryDirectory(prefix="vf-sheet-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        return library.products.import_metadata(path, replace_tags=replace_tags, dry_run=dry_run)


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _read_form(request: Request, max_files: int, max_fields: int) -> FormData:
    """The multipart body, with Starlette's refusals as our errors: too many files or fields is
    a 422 like too many terms, a body that is not valid multipart a 400 `bad_form`."""
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except StarletteHTTPException as exc:
        detail = str(exc.detail).rstrip(".")
        if detail.startswith("Too many"):
            raise ApiError(422, "invalid_request", f"{detail} in one request") from None
        raise ApiError(400, "bad_form", f"the multipart body cannot be read: {detail}") from None

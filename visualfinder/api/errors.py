"""One error shape for every answer that is not a success: {"error": {"code", "message"}}.

The core's typed errors become a status code and a stable `code`; FastAPI's validation errors
become 422, unknown routes 404, anything unexpected 500 - never a traceback or an HTML page.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from visualfinder.errors import (
    Cancelled,
    EmptyLibraryError,
    FolderNotFoundError,
    ImageDecodeError,
    ImageNotFoundError,
    LibraryBusyError,
    ModelMismatchError,
    ModelUnavailableError,
    QueryError,
    RemoteError,
    SettingsError,
    StorageError,
    VisualFinderError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success, raised anywhere below a route."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str, retry_after: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# Most specific first: the first isinstance match wins.
_CORE_ERRORS: list[tuple[type[VisualFinderError], int, str]] = [
    (ImageNotFoundError, 404, "not_found"),
    (FolderNotFoundError, 404, "folder_not_found"),
    (QueryError, 400, "bad_query"),
    (SettingsError, 400, "bad_setting"),
    (EmptyLibraryError, 503, "empty_library"),
    (ModelMismatchError, 503, "model_mismatch"),
    (ModelUnavailableError, 503, "model_unavailable"),
    (LibraryBusyError, 503, "busy"),
    (RemoteError, 503, "remote"),
    (StorageError, 503, "storage"),
    (Cancelled, 503, "shutting_down"),
]


def from_core(exc: VisualFinderError) -> ApiError:
    """The API error for a core error; a query image that is not one is 415, a bomb 413."""
    cause = exc.__cause__
    if isinstance(exc, QueryError) and isinstance(cause, ImageDecodeError):
        if cause.reason.startswith("image too large"):
            return ApiError(413, "image_too_large", str(exc))
        return ApiError(415, "not_an_image", str(exc))
    for kind, status, code in _CORE_ERRORS:
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc), 5.0 if isinstance(exc, LibraryBusyError) else None)
    return ApiError(400, "error", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)

    @app.exception_handler(VisualFinderError)
    async def _core(request: Request, exc: VisualFinderError):
        error = from_core(exc)
        return error_response(error.status, error.code, error.message, error.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(500, "internal", "the server failed to answer this request; see its log")


def _validation_message(exc: RequestValidationError) -> str:
    """One line naming each bad field: 'k: Input should be a valid integer; ...'."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"

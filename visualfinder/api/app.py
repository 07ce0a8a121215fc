"""The app factory: one FastAPI app over one ApiService, so tests start it on any port."""

from __future__ import annotations

from fastapi import FastAPI

from visualfinder import __version__
from visualfinder.api.auth import BearerToken
from visualfinder.api.errors import install_error_handlers
from visualfinder.api.limits import BodyLimit
from visualfinder.api.routes import build_router
from visualfinder.api.schemas import SearchBody
from visualfinder.api.service import ApiService


def create_app(service: ApiService, token: str | None) -> FastAPI:
    """The API over `service`; with `token`, every /api request needs `Authorization: Bearer`."""
    app = FastAPI(
        title="visualfinder", version=__version__,
        description="Visual product search over an image catalog: search by photo, text or product.",
    )  # fmt: skip
    install_error_handlers(app)
    app.include_router(build_router(service, BearerToken(token)))
    # The JSON search body is read by hand (the endpoint also takes multipart): publish its schema.
    original = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, part in SearchBody.model_json_schema(
                ref_template="#/components/schemas/{model}"
            ).items():
                if name == "$defs":
                    components.update(part)
            components["SearchBody"] = {
                k: v
                for k, v in SearchBody.model_json_schema(ref_template="#/components/schemas/{model}").items()
                if k != "$defs"
            }
        return app.openapi_schema

    app.openapi = openapi
    origins = service.settings.api_cors_origin_list
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Accept"])  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=service.settings.api_max_upload_bytes)
    app.state.service = service
    return app

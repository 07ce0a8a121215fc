"""The request body limit, enforced while the body arrives (before multipart parsing buffers it):
a declared Content-Length over the limit is refused at once, a chunked body once it passes it."""

from __future__ import annotations

import json

from visualfinder.api.errors import ApiError

_MB = 1024 * 1024


def _too_large_message(max_bytes: int) -> str:
    return f"the request body is larger than this server accepts ({max_bytes / _MB:.1f} MB)"


class BodyTooLarge(ApiError):
    """Raised from `receive` inside a route; the app's ApiError handler answers 413."""

    def __init__(self, max_bytes: int):
        super().__init__(413, "too_large", _too_large_message(max_bytes))


class BodyLimit:
    """ASGI middleware: 413 with the API's error shape for bodies over `max_bytes`."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": {"code": "too_large", "message": _too_large_message(self.max_bytes)}})
        body = body.encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

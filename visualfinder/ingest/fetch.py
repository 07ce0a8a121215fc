"""Query images from the web: http(s) only, a size limit, a timeout and a content-type check.

Only what a query needs: one GET, no cookies, no credentials. The bytes are decoded by
`imaging.decode_image` like any file, so a server that lies about the type still cannot
hand the decoder anything but an image.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request

from visualfinder import __version__
from visualfinder.errors import QueryError

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
# Types some servers use for any file: allowed, and the decoder then decides.
_GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream", "application/binary")


def is_url(text: object) -> bool:
    """True for an http(s) URL given where a file path could be."""
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


def fetch_image(url: str, *, max_bytes: int, timeout: float) -> bytes:
    """GET `url` and return its body; raises QueryError with a one-line reason otherwise."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise QueryError(f"cannot fetch {url}: only http:// and https:// URLs can be query images")
    request = urllib.request.Request(
        url, headers={"User-Agent": f"visualfinder/{__version__}", "Accept": "image/*;q=1.0, */*;q=0.1"}
    )
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            _check_type(
                url, response.headers.get_content_type() if response.headers.get("Content-Type") else ""
            )
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise QueryError(f"{url} is too large ({_mb(int(length))}; the limit is {_mb(max_bytes)})")
            return _read_limited(url, response, max_bytes, deadline, timeout)
    except QueryError:
        raise
    except urllib.error.HTTPError as exc:
        raise QueryError(f"cannot fetch {url}: the server answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise QueryError(f"cannot fetch {url}: no answer within {timeout:g} s") from exc
        raise QueryError(f"cannot fetch {url}: {_reason(exc.reason)}") from exc
    except TimeoutError as exc:
        raise QueryError(f"cannot fetch {url}: no answer within {timeout:g} s") from exc
    except (OSError, ValueError) as exc:  # connection reset, malformed response, bad port
        raise QueryError(f"cannot fetch {url}: {_reason(exc)}") from exc


def _check_type(url: str, content_type: str) -> None:
    ctype = content_type.lower()
    if ctype.startswith("image/"):
        if ctype == "image/svg+xml":
            raise QueryError(f"{url} is an SVG drawing; give a photo (JPEG, PNG, WebP, ...)")
        return
    if ctype not in _GENERIC_TYPES:
        raise QueryError(f"{url} is not an image (the server sent {ctype})")


def _read_limited(url: str, response, max_bytes: int, deadline: float, timeout: float) -> bytes:
    """Read at most `max_bytes`, and give up when the whole download outlasts the timeout."""
    parts: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise QueryError(f"cannot fetch {url}: the download took longer than {timeout:g} s")
        # read1: whatever has arrived (one recv), so a trickling server cannot outlast the deadline.
        chunk = response.read1(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise QueryError(f"{url} is too large (more than {_mb(max_bytes)})")
    if total == 0:
        raise QueryError(f"cannot fetch {url}: the server sent an empty response")
    log.debug("fetched %s (%d bytes)", url, total)
    return b"".join(parts)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) (urllib would also follow one to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise QueryError(f"cannot fetch {req.full_url}: it redirects to {newurl}, which is not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__

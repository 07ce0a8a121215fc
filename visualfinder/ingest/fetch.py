"""Query images from the web: http(s) only, a size limit, a timeout and a content-type check.

Only what a query needs: one GET, no cookies, no credentials. The bytes are decoded by
`imaging.decode_image` like any file, so a server that lies about the type still cannot
hand the decoder anything but an image.

A server fetching for strangers (the HTTP API) passes `allow_private=False`: every address a
host name resolves to is checked when the connection is made (each redirect's too, and after
DNS, so a name that resolves to 127.0.0.1 is refused as 127.0.0.1 is), and `max_redirects`.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import logging
import socket
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


def fetch_image(
    url: str, *, max_bytes: int, timeout: float, allow_private: bool = True, max_redirects: int = 10
) -> bytes:
    """GET `url` and return its body; raises QueryError with a one-line reason otherwise.

    `allow_private=False` refuses loopback, private, link-local and other non-public addresses
    (and then ignores proxy environment variables, whose address would be the one checked).
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise QueryError(f"cannot fetch {url}: only http:// and https:// URLs can be query images")
    request = urllib.request.Request(
        url, headers={"User-Agent": f"visualfinder/{__version__}", "Accept": "image/*;q=1.0, */*;q=0.1"}
    )
    deadline = time.monotonic() + timeout
    redirects = type("_Redirects", (_HttpOnlyRedirects,), {"max_redirections": max_redirects})
    handlers: list = [redirects]
    if not allow_private:
        handlers += [urllib.request.ProxyHandler({}), _PublicHTTPHandler(url), _PublicHTTPSHandler(url)]
    opener = urllib.request.build_opener(*handlers)
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
        if 300 <= exc.code < 400:
            raise QueryError(f"cannot fetch {url}: more than {max_redirects} redirects") from exc
        raise QueryError(f"cannot fetch {url}: the server answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, QueryError):
            raise exc.reason from exc
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


# --- public addresses only -------------------------------------------------------------


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _public_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, *, url: str):
    """socket.create_connection to the first public address of `address`'s host, checked after DNS."""
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    refused = [info for info in infos if not is_public_address(info[4][0])]
    if refused:
        raise QueryError(
            f"cannot fetch {url}: {host} is a loopback, private or link-local address "
            f"({refused[0][4][0]}); this server only fetches from public addresses"
        )
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
            sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
        return sock
    except BaseException:
        sock.close()
        raise


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, url: str):
        super().__init__()
        self._url = url

    def http_open(self, req):
        return self.do_open(functools.partial(_public_http_connection, url=self._url), req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, url: str):
        super().__init__()
        self._url = url

    def https_open(self, req):
        return self.do_open(
            functools.partial(_public_http_connection, https=True, url=self._url), req,
            context=self._context,
        )  # fmt: skip


def _public_http_connection(host, *, url: str, https: bool = False, **kwargs):
    """An http.client connection whose socket goes only to public addresses."""
    conn = (
        http.client.HTTPSConnection(host, **kwargs) if https else http.client.HTTPConnection(host, **kwargs)
    )
    conn._create_connection = functools.partial(_public_connection, url=url)
    return conn

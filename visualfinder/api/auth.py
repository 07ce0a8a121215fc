"""The API token: from VISUALFINDER_API_TOKEN or the data dir's token file (mode 0600), made by
`visualfinder serve --new-token`; once set, every /api request needs `Authorization: Bearer`."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from visualfinder.api.errors import ApiError
from visualfinder.config import Settings
from visualfinder.errors import SettingsError, StorageError

ENV_TOKEN = "VISUALFINDER_API_TOKEN"
TOKEN_FILE = "api-token"


def token_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / TOKEN_FILE


def load_token(settings: Settings) -> str | None:
    """The token the server requires, or None (no token: loopback only)."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    if token:
        return token
    path = token_path(settings)
    if not path.is_file():
        return None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise SettingsError(f"{path} can be read by other users; run: chmod 600 {path}")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"cannot read the API token file {path}: {exc.strerror or exc}") from exc
    return token or None


def new_token(settings: Settings) -> str:
    """Make a new random token and write it to the token file, readable by its owner only."""
    token = secrets.token_urlsafe(32)
    path = token_path(settings)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write the API token file {path}: {exc.strerror or exc}") from exc
    return token


class BearerToken:
    """A FastAPI dependency: the request must carry the token (compared in constant time)."""

    def __init__(self, token: str | None):
        self._expected = token.encode() if token else None

    def __call__(self, request: Request) -> None:
        if self._expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "unauthorized", "this server needs a token: send Authorization: Bearer TOKEN")
        if not hmac.compare_digest(given.strip().encode(), self._expected):
            raise ApiError(401, "unauthorized", "the token is not valid")

"""A real `visualfinder serve` in a subprocess on a free loopback port, spoken to over real HTTP.

The server is started with `--port 0` and announces the port it bound on stdout, so no test
races another for a port. `ApiServer.call` is a small urllib client that returns every answer,
errors included, as (status, headers, body).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from procutil import subprocess_env

TINY_ENV = {"VISUALFINDER_MODEL": "vf-tiny", "VISUALFINDER_PRETRAINED": "none", "VISUALFINDER_DEVICE": "cpu",
            "VISUALFINDER_BACKEND": "torch"}  # fmt: skip
START_TIMEOUT_S = 180  # a safety net only: the server says when it is ready


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        return self.json()["error"]["code"]


class ApiServer:
    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict | None = None,
        extra_paths: tuple[str, ...] = (),
        start_timeout: float = START_TIMEOUT_S,
    ):
        self.data_dir = Path(data_dir)
        self.token: str | None = None
        self.stderr_path = self.data_dir.parent / f"serve-{uuid.uuid4().hex[:6]}.err"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        full_env = subprocess_env(
            *extra_paths, **{**TINY_ENV, "VISUALFINDER_DATA_DIR": str(data_dir), **(env or {})}
        )
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "visualfinder", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self._stderr, env=full_env, text=True,
        )  # fmt: skip
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        try:
            line = self._lines.get(timeout=start_timeout)
        except queue.Empty:
            line = "(no answer within the start timeout)"
        if line is None or "serving http://" not in line:
            self.stop()
            raise RuntimeError(f"serve did not start: {line!r}\n{self.stderr}")
        self.base = line.split("serving ", 1)[1].split("/api/v1", 1)[0]

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def call(self, method: str, path: str, *, json_body=None, data: bytes | None = None,
             headers: dict | None = None, files: list[tuple[str, str, bytes]] | None = None,
             fields: dict | None = None, timeout: float = 120) -> Answer:  # fmt: skip
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif files is not None or fields is not None:
            data, content_type = multipart(files or [], fields or {})
            headers["Content-Type"] = content_type
        url = path if path.startswith("http") else self.base + path
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read())

    def accepting(self) -> bool:
        """Whether the server still takes new connections (it stops at once when shutting down)."""
        host, port = self.base.removeprefix("http://").rsplit(":", 1)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except ConnectionRefusedError:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


def multipart(files: list[tuple[str, str, bytes]], fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: files as (field, filename, bytes); fields may hold lists."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{item}\r\n'.encode()
            )
    for name, filename, content in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def index_folders(data_dir: Path, *folders: Path, extra: tuple[str, ...] = ()) -> None:
    """`visualfinder index FOLDERS` in a subprocess, as a user would before serving."""
    env = subprocess_env(**TINY_ENV, VISUALFINDER_DATA_DIR=str(data_dir))
    proc = subprocess.run([sys.executable, "-m", "visualfinder", "index", *map(str, folders), *extra],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def write_settings(data_dir: Path, **values) -> None:
    from visualfinder.config import update_settings_file

    update_settings_file(data_dir, **values)


__all__ = ["Answer", "ApiServer", "index_folders", "multipart", "write_settings", "os"]

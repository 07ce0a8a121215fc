"""`visualfinder serve`'s lifecycle: open the library (model warm), watch its folders, serve
over uvicorn until SIGTERM or Ctrl+C, let the requests in flight finish, close everything."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Callable

from visualfinder.api.app import create_app
from visualfinder.api.auth import ENV_TOKEN, load_token
from visualfinder.api.service import ApiService
from visualfinder.config import Settings
from visualfinder.errors import SettingsError
from visualfinder.jobs import ProgressCallback, no_progress

log = logging.getLogger(__name__)

# Seconds the requests in flight get to finish after SIGTERM / Ctrl+C.
GRACEFUL_SHUTDOWN_S = 30


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """A bind beyond this machine needs a token; say so in one line."""
    if not is_loopback(host) and not token:
        raise SettingsError(
            f"refusing to listen on {host} without a token: run `visualfinder serve --new-token` "
            f"or set {ENV_TOKEN} (or bind to 127.0.0.1)"
        )


def serve(
    settings: Settings, host: str, port: int, *, remote: bool = False,
    progress: ProgressCallback = no_progress, announce: Callable[[str], None] | None = None,
) -> int:  # fmt: skip
    """Run the API until a signal stops it; returns the exit code."""
    import uvicorn

    token = load_token(settings)
    check_bind(host, token)
    library = watcher = sync = None
    if remote:
        from visualfinder.library.stateless import open_remote_only

        service = ApiService(settings, remote=open_remote_only(settings))
        service.remote.embedder.warm()  # both towers' sessions open before the first request
    else:
        from visualfinder.ingest.watcher import Watcher
        from visualfinder.library.facade import open_library
        from visualfinder.remote.worker import start_live_sync

        library = open_library(settings, progress)
        try:
            library.embedder.warm()  # loaded, both towers' sessions open: before the first request
            service = ApiService(settings, library=library)
            watcher = Watcher(library)
            watcher.start()
            sync = start_live_sync(library)
        except BaseException:
            library.close()
            raise
    try:
        app = create_app(service, token)
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", access_log=False, log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False,
        )  # fmt: skip
        server = _Server(config, announce or _print_ready, bool(token))
        server.run()
    finally:
        service.close()  # the model's queue and the indexing jobs end first: they use the library
        if watcher is not None:
            watcher.stop(timeout=None)
        if sync is not None:
            sync.stop()
        if library is not None:
            library.close()
        if service.remote is not None:
            service.remote.close()
    return 0


def _print_ready(line: str) -> None:
    print(line, flush=True)


class _Server:
    """uvicorn.Server that announces the address it bound (port 0 picks a free one)."""

    def __new__(cls, config, announce: Callable[[str], None], has_token: bool):
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):
                # As uvicorn's, without raising the signal again afterwards: that would end the
                # process before the library is closed. A second Ctrl+C still forces the exit.
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {
                    sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
                }
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
                if self._captured_signals:
                    print("visualfinder: stopping: finished the requests in flight, closing the library",
                          file=sys.stderr, flush=True)  # fmt: skip

            async def startup(self, sockets=None):
                await super().startup(sockets)
                if self.should_exit or not self.servers:
                    return
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                auth = "token required" if has_token else "no token (loopback only)"
                announce(f"visualfinder: serving http://{shown}:{port}/api/v1 ({auth}); docs at /docs")
                sys.stdout.flush()

        return Server(config)

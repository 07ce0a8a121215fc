"""Typed errors raised by the core. Their message is a complete, user-facing sentence.

The CLI prints the message (no traceback) and exits non-zero; the GUI shows it in a dialog.
"""

from __future__ import annotations


class VisualFinderError(Exception):
    """Base class: something the user can act on, explained in the message."""

    exit_code = 1


class SettingsError(VisualFinderError):
    """A setting has a value we cannot use."""

    exit_code = 2


class FolderNotFoundError(VisualFinderError):
    """A folder given to index or watch does not exist or is not a folder."""

    exit_code = 2


class CatalogError(VisualFinderError):
    """The catalog database cannot be opened or written."""


class StorageError(VisualFinderError):
    """A file cannot be written (disk full, read-only, folder gone); nothing committed is lost."""


class LibraryBusyError(VisualFinderError):
    """Another process holds the library's writer lock."""


class ModelUnavailableError(VisualFinderError):
    """Model weights could not be found or downloaded."""


class ModelMismatchError(VisualFinderError):
    """The library was built with another model or metric than the one requested."""


class ImageDecodeError(VisualFinderError):
    """An image file could not be decoded; `reason` is the short explanation.

    `transient`: the bytes could not be read now (permission, I/O), so a later try may succeed;
    otherwise the bytes are not a usable image, which only a change of the file can cure.
    """

    def __init__(self, reason: str, path: str | None = None, *, transient: bool = False):
        self.reason = reason
        self.path = path
        self.transient = transient
        super().__init__(f"{path}: {reason}" if path else reason)


class QueryError(VisualFinderError):
    """A search query is malformed or refers to something that does not exist."""

    exit_code = 2


class ImageNotFoundError(QueryError):
    """An image id or path that the library does not hold."""


class EmptyLibraryError(VisualFinderError):
    """Searching a library that has no indexed images."""


class Cancelled(VisualFinderError):
    """A long job was cancelled through its CancelToken."""


class RemoteError(VisualFinderError):
    """The OpenSearch cluster refused a request, or is set up in a way we cannot use."""


class RemoteUnavailableError(RemoteError):
    """The cluster cannot be reached (or kept failing with 429/5xx); local changes stay in the outbox."""

    exit_code = 3


class RemoteMismatchError(RemoteError):
    """The remote index holds other vectors (dimension, metric or model) than this library's."""


class RemoteAuthError(RemoteError):
    """The cluster refused our credentials, or no usable credentials are configured."""

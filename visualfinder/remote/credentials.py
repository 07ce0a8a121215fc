"""The cluster password, kept in the OS keyring and nowhere else (never settings.toml, never logs).

Headless servers without a keyring can pass it in the environment instead
(VISUALFINDER_REMOTE_PASSWORD), which is read, never stored.
"""

from __future__ import annotations

import logging
import os

from visualfinder.errors import RemoteAuthError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "visualfinder-opensearch"
ENV_PASSWORD = "VISUALFINDER_REMOTE_PASSWORD"


def keyring_account(user: str, url: str) -> str:
    """The keyring entry of one user on one cluster (its first URL)."""
    return f"{user}@{url}"


def get_password(user: str, url: str) -> str | None:
    """The stored password, the env override, or None when neither exists."""
    if os.environ.get(ENV_PASSWORD):
        return os.environ[ENV_PASSWORD]
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, keyring_account(user, url))
    except KeyringError as exc:
        log.warning("cannot read the OS keyring (%s); connecting without a password", _short(exc))
        return None


def set_password(user: str, url: str, password: str) -> str:
    """Store the password in the OS keyring; returns the keyring backend's name."""
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, keyring_account(user, url), password)
    except KeyringError as exc:
        raise RemoteAuthError(
            f"cannot store the password: no usable OS keyring ({_short(exc)}); unlock or install one "
            f"(GNOME Keyring, KWallet, macOS Keychain, Windows Credential Manager), or set {ENV_PASSWORD} "
            "in the environment of the process that syncs"
        ) from exc
    return type(keyring.get_keyring()).__name__


def delete_password(user: str, url: str) -> bool:
    """Remove the stored password; False when there was none."""
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(KEYRING_SERVICE, keyring_account(user, url))
    except PasswordDeleteError:
        return False
    except KeyringError as exc:
        raise RemoteAuthError(f"cannot change the OS keyring: {_short(exc)}") from exc
    return True


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

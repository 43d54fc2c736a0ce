"""Key providers (where KEKs live) and the one factory that picks one from settings."""

from __future__ import annotations

from pathlib import Path

from rempart.crypto.errors import KeyProviderUnavailable
from rempart.crypto.interfaces import KeyProvider
from rempart.crypto.providers.file import FileKeyProvider
from rempart.crypto.providers.pkcs11 import Pkcs11KeyProvider

KEY_FILE_NAME = "keys.json"

__all__ = ["KEY_FILE_NAME", "FileKeyProvider", "Pkcs11KeyProvider", "load_key_provider"]


def load_key_provider(kind: str, home: Path, **settings: str) -> KeyProvider:
    """Build the configured provider; does no I/O (call ``check()`` at start).

    ``kind="file"``: ``FileKeyProvider(home / "keys.json")``; no settings.
    ``kind="pkcs11"``: settings ``library_path``, ``token_label``, ``pin`` and optionally
    ``key_label_prefix``.
    """
    if kind == "file":
        if settings:
            raise KeyProviderUnavailable(
                f"the file key provider takes no settings, got {', '.join(sorted(settings))}"
            )
        return FileKeyProvider(Path(home) / KEY_FILE_NAME)
    if kind == "pkcs11":
        required = ("library_path", "token_label", "pin")
        missing = [name for name in required if not settings.get(name)]
        unknown = set(settings) - {*required, "key_label_prefix"}
        if missing or unknown:
            raise KeyProviderUnavailable(
                "the pkcs11 key provider needs settings library_path, token_label and pin "
                "(key_label_prefix is optional); "
                + "; ".join(
                    part
                    for part in (
                        f"missing: {', '.join(missing)}" if missing else "",
                        f"unknown: {', '.join(sorted(unknown))}" if unknown else "",
                    )
                    if part
                )
            )
        return Pkcs11KeyProvider(
            library_path=settings["library_path"],
            token_label=settings["token_label"],
            pin=settings["pin"],
            key_label_prefix=settings.get("key_label_prefix") or "rempart-kek",
        )
    raise KeyProviderUnavailable(f"unknown key provider {kind!r}; expected 'file' or 'pkcs11'")

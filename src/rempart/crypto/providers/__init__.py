"""Key providers (where KEKs live) and the one factory that picks one from settings."""

from __future__ import annotations

import os
from pathlib import Path

from rempart.crypto.errors import KeyProviderUnavailable
from rempart.crypto.interfaces import KeyProvider
from rempart.crypto.providers.file import FileKeyProvider
from rempart.crypto.providers.pkcs11 import Pkcs11KeyProvider

KEY_FILE_NAME = "keys.json"

__all__ = [
    "KEY_FILE_NAME",
    "PIN_ENV_DEFAULT",
    "FileKeyProvider",
    "Pkcs11KeyProvider",
    "load_key_provider",
    "provision_key_provider",
    "read_pin",
]


PIN_ENV_DEFAULT = "REMPART_PKCS11_PIN"


def load_key_provider(kind: str, home: Path, **settings: str) -> KeyProvider:
    """Build the configured provider; does no I/O beyond reading the PIN (call ``check()``).

    ``kind="file"``: ``FileKeyProvider(home / "keys.json")``; no settings.
    ``kind="pkcs11"``: settings ``library_path``, ``token_label``, the PIN's source (exactly one
    of ``pin_env``, the name of an environment variable, or ``pin_file``, a 0600 file) and
    optionally ``key_label_prefix``. The PIN itself is never a setting: settings come from
    ``config.toml``, which must not hold it in clear.
    """
    if kind == "file":
        if settings:
            raise KeyProviderUnavailable(
                f"the file key provider takes no settings, got {', '.join(sorted(settings))}"
            )
        return FileKeyProvider(Path(home) / KEY_FILE_NAME)
    if kind == "pkcs11":
        if "pin" in settings:
            raise KeyProviderUnavailable(
                "the HSM PIN must not be written in the configuration; set pin_env (the name "
                "of an environment variable holding it) or pin_file (a file of mode 0600)"
            )
        required = ("library_path", "token_label")
        missing = [name for name in required if not settings.get(name)]
        if not settings.get("pin_env") and not settings.get("pin_file"):
            missing.append("pin_env or pin_file")
        unknown = set(settings) - {*required, "pin_env", "pin_file", "key_label_prefix"}
        if missing or unknown:
            raise KeyProviderUnavailable(
                "the pkcs11 key provider needs settings library_path, token_label and pin_env "
                "or pin_file (key_label_prefix is optional); "
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
            pin=read_pin(settings.get("pin_env", ""), settings.get("pin_file", "")),
            key_label_prefix=settings.get("key_label_prefix") or "rempart-kek",
        )
    raise KeyProviderUnavailable(f"unknown key provider {kind!r}; expected 'file' or 'pkcs11'")


def read_pin(pin_env: str, pin_file: str) -> str:
    """The HSM user PIN from its file (preferred when both are set) or environment variable."""
    if pin_file:
        path = Path(pin_file)
        try:
            info = path.stat()
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyProviderUnavailable(
                f"cannot read the HSM PIN file {path}: {exc.strerror}; create it (mode 0600) "
                f"or fix pin_file under [key_provider] in config.toml"
            ) from None
        if info.st_mode & 0o077:
            raise KeyProviderUnavailable(
                f"the HSM PIN file {path} has mode {info.st_mode & 0o777:04o}, which lets other "
                f"users read the PIN; run chmod 600 {path}"
            )
        pin = text.strip("\r\n")
        if not pin:
            raise KeyProviderUnavailable(f"the HSM PIN file {path} is empty")
        return pin
    pin = os.environ.get(pin_env, "")
    if not pin:
        raise KeyProviderUnavailable(
            f"the HSM PIN is read from the environment variable {pin_env}, which is not set "
            f"in this process; set it (for systemd: an EnvironmentFile of mode 0600)"
        )
    return pin


def provision_key_provider(kind: str, home: Path, **settings: str) -> None:
    """At `rempart init`: make the first KEK if the provider holds none, then check it."""
    if kind == "file":
        path = Path(home) / KEY_FILE_NAME
        if not path.exists():
            FileKeyProvider.create(path)
        return
    provider = load_key_provider(kind, home, **settings)
    try:
        if not provider.kek_ids():
            provider.create_kek()
        provider.check()
    finally:
        close = getattr(provider, "close", None)
        if close is not None:
            close()

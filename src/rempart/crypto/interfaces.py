"""The contract every key provider meets, and the value it hands back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under a key-encryption key (KEK).

    ``kek_id`` is stored next to ``blob`` so that records wrapped before a rotation can still
    be unwrapped, and so that a re-wrap job can find the rows still under an old KEK.
    ``blob`` is ``nonce (12) || ciphertext || tag (16)`` for both providers.
    """

    kek_id: str
    blob: bytes


@runtime_checkable
class KeyProvider(Protocol):
    """Holds the KEKs, outside the database (threat A4), and wraps data keys with them.

    Implementations: ``FileKeyProvider`` (a 0600 key file), ``Pkcs11KeyProvider`` (an HSM).
    All methods are safe to call from several threads.
    """

    def check(self) -> None:
        """Raise ``KeyProviderUnavailable`` (with the fix) unless the provider is usable.

        Called at server start so that a bad key setup stops the server, not the first read.
        """

    def current_kek_id(self) -> str:
        """The KEK that :meth:`wrap` uses now."""

    def wrap(self, key: bytes, aad: bytes) -> WrappedKey:
        """Encrypt a 32-byte ``key`` under the current KEK with AES-256-GCM bound to ``aad``."""

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """Decrypt under whichever held KEK ``wrapped.kek_id`` names.

        Raises ``IntegrityError`` on tampering or an ``aad`` mismatch, ``KekNotFound`` when the
        KEK was retired or never held.
        """

    def kek_ids(self) -> list[str]:
        """Every KEK this provider holds, the current one included (rotation retires the rest)."""

    def create_kek(self) -> str:
        """Rotation, step 1: make a new KEK current. Older KEKs still unwrap."""

    def retire_kek(self, kek_id: str) -> None:
        """Rotation, last step, after every key was re-wrapped: delete an old KEK.

        The current KEK cannot be retired. Other processes learn of a new current KEK with a
        delay (the PKCS#11 provider rescans the token at most once a second), so the caller
        retires only after a final sweep, started after that delay, finds no stored
        ``WrappedKey`` naming ``kek_id``; otherwise keys wrapped meanwhile would be lost.
        """

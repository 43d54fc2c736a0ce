"""AES-256-GCM sealing of one message under one data key.

Blob layout: ``nonce (12 bytes) || ciphertext || tag (16 bytes)``.

Nonce bound: every seal draws a fresh random 96-bit nonce. NIST SP 800-38D caps random-nonce
GCM at 2**32 messages per key, which keeps the probability of a nonce collision (which would
reveal the XOR of two plaintexts and allow forgeries) below 2**-32. Per-patient data keys see
a few thousand messages over a lifetime, far under the bound; a key that could approach it
(a bulk-import key, say) must be rotated long before.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rempart.crypto.errors import IntegrityError

KEY_SIZE = 32  # bytes: AES-256
NONCE_SIZE = 12  # bytes: the 96-bit nonce GCM is specified for
TAG_SIZE = 16  # bytes: full 128-bit tag, never truncated


def new_data_key() -> bytes:
    """Return 32 fresh random bytes from the operating system's CSPRNG."""
    return AESGCM.generate_key(bit_length=KEY_SIZE * 8)


def check_key(key: bytes) -> None:
    """Refuse keys that are not 32 bytes.

    AESGCM would silently accept a 16- or 24-byte key; a short key here is a bug (a truncated
    column, a key of the wrong kind), so it is a ``ValueError`` rather than a crypto failure.
    """
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise ValueError(f"AES-256 keys are {KEY_SIZE} bytes, got {size}")


def seal_with(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """Seal with an already constructed ``AESGCM`` (providers reuse one per KEK)."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_with(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    """Open a blob made by :func:`seal_with`; raise :class:`IntegrityError` on any failure."""
    if len(blob) < NONCE_SIZE + TAG_SIZE:
        raise IntegrityError(
            f"sealed blob is {len(blob)} bytes, shorter than nonce and tag "
            f"({NONCE_SIZE + TAG_SIZE}); it was truncated or is not a sealed blob"
        )
    try:
        return aead.decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)
    except InvalidTag:
        # The message cannot tell tampering, a row swap and a wrong key apart, by design.
        raise IntegrityError(
            "authentication tag mismatch: ciphertext altered, bound to another row, "
            "or opened with the wrong key"
        ) from None


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` and ``aad`` under ``key`` (AES-256-GCM).

    ``aad`` is authenticated but not encrypted: pass what the ciphertext belongs to (table,
    row id, patient, version) so that a copied or swapped ciphertext fails to open.
    Returns ``nonce || ciphertext || tag``.
    """
    check_key(key)
    return seal_with(AESGCM(key), plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Reverse :func:`seal`. Raises :class:`IntegrityError` if anything does not match."""
    check_key(key)
    return open_with(AESGCM(key), blob, aad)

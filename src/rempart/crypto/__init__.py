"""Envelope encryption for rempart (threat A4: a copy of the database reveals nothing).

Each patient's records are sealed with AES-256-GCM under a per-patient data key
(:func:`seal` / :func:`open_sealed`); the data key is stored only wrapped by a key-encryption
key (KEK) that lives outside the database, in a key file or an HSM (:class:`KeyProvider`).
Searchable fields are stored as keyed blind indexes (:class:`BlindIndex`). Unwrapped data keys
are kept in memory for a bounded time (:class:`KeyCache`).

Only primitives from ``cryptography`` and the PKCS#11 token are used; nothing here is a
home-made cipher or MAC.
"""

from rempart.crypto.aead import new_data_key, open_sealed, seal
from rempart.crypto.blind import BlindIndex
from rempart.crypto.cache import KeyCache
from rempart.crypto.errors import (
    CryptoError,
    IntegrityError,
    KekNotFound,
    KeyFileExists,
    KeyProviderUnavailable,
)
from rempart.crypto.interfaces import KeyProvider, WrappedKey
from rempart.crypto.providers import FileKeyProvider, Pkcs11KeyProvider, load_key_provider

__all__ = [
    "BlindIndex",
    "CryptoError",
    "FileKeyProvider",
    "IntegrityError",
    "KekNotFound",
    "KeyCache",
    "KeyFileExists",
    "KeyProvider",
    "KeyProviderUnavailable",
    "Pkcs11KeyProvider",
    "WrappedKey",
    "load_key_provider",
    "new_data_key",
    "open_sealed",
    "seal",
]

"""Keyed blind indexes: exact-match search over values the database never sees in clear.

A token (a family name, an INS, a birth date, a code) becomes
``HMAC-SHA256(key, "<resource type>|<param>|<token>")`` truncated to 16 bytes. Without the
key, a stolen database holds only pseudorandom values; equal tokens still give equal digests,
which is what an index lookup needs.

Why 16 bytes: 128 bits keeps accidental collisions negligible (about 2**-64 for 2**32 rows)
and halves index size compared with the full 32-byte HMAC.

Why the type and parameter are in the message: the same surname as a ``Patient.family`` and
as a ``Practitioner.family`` must not give the same digest, or an attacker could join the
two tables and learn which patients share a name with staff.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

DIGEST_SIZE = 16  # bytes kept from the 32-byte HMAC-SHA256 output
_SEPARATOR = "|"


class BlindIndex:
    """HMAC-SHA256 blind index under one 32-byte search key. Thread-safe: its only shared state
    is a cache of keyed HMAC states, read and filled with equal values by any thread."""

    __slots__ = ("_base", "_domains")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise ValueError("a blind-index key is 32 bytes")
        # Keying HMAC hashes the padded key into the inner and outer states; copying that
        # keyed state per digest skips the work: about 1.0M digests/s here against 0.84M
        # for hmac.new() per call (CPython 3.11, OpenSSL-backed hmac, one core).
        self._base = hmac.new(key, digestmod=hashlib.sha256)
        # Bulk ingest computes ~25 digests per resource: the keyed state is also kept per
        # (type, param) after it absorbed "type|param|" (a few hundred pairs at most), so a
        # digest is one copy, one update and one finalisation, all inside the stdlib's hmac.
        self._domains: dict[tuple[str, str], Any] = {}

    def digest(self, resource_type: str, param: str, token: str) -> bytes:
        """Return the 16-byte index value of ``token`` for ``resource_type``/``param``."""
        keyed = self._domains.get((resource_type, param))
        if keyed is None:
            keyed = self._base.copy()
            keyed.update(_domain(resource_type, param).encode("utf-8"))
            self._domains[(resource_type, param)] = keyed
        mac = keyed.copy()
        mac.update(token.encode("utf-8"))
        return mac.digest()[:DIGEST_SIZE]

    def digest_pairs(self, resource_type: str, pairs: Iterable[tuple[str, str]]) -> list[bytes]:
        """The digests of (param, token) pairs of one resource type, in order."""
        digest = self.digest
        return [digest(resource_type, param, token) for param, token in pairs]

    def digest_many(self, resource_type: str, param: str, tokens: Iterable[str]) -> list[bytes]:
        """Index several tokens of one parameter (the domain prefix is absorbed once)."""
        base = self._base.copy()
        base.update(_domain(resource_type, param).encode("utf-8"))
        out: list[bytes] = []
        for token in tokens:
            mac = base.copy()
            mac.update(token.encode("utf-8"))
            out.append(mac.digest()[:DIGEST_SIZE])
        return out


def _domain(resource_type: str, param: str) -> str:
    # The token may contain anything (it comes last), but a separator inside the type or the
    # parameter would let ("A|b", "c") and ("A", "b|c") share a domain.
    if _SEPARATOR in resource_type or _SEPARATOR in param:
        raise ValueError(f"resource type and parameter must not contain {_SEPARATOR!r}")
    return f"{resource_type}{_SEPARATOR}{param}{_SEPARATOR}"

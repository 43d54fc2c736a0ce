"""Argon2id password hashing with the configured cost, never below OWASP's floor.

A hash made with other (older, cheaper) parameters still verifies, and `needs_rehash` tells
the login to store a new one: raising the cost in config upgrades every account as it signs in.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from rempart.identity.settings import Argon2Params


class Passwords:
    def __init__(self, params: Argon2Params) -> None:
        # Argon2Params refuses anything under OWASP's floor when it is built.
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verified when the username is unknown, so both answers take the same time.
        self._dummy = self._hasher.hash("rempart-timing-equaliser-not-a-password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


_default: Passwords | None = None


def _defaults() -> Passwords:
    global _default  # noqa: PLW0603 - one lazily built hasher for the module-level helpers
    if _default is None:
        _default = Passwords(Argon2Params())
    return _default


def hash_password(password: str) -> str:
    """With the default parameters (for code that has no IdentityService at hand)."""
    return _defaults().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    return _defaults().verify(stored_hash, password)

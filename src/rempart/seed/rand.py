"""Deterministic randomness: every entity gets its own RNG derived from (seed, kind, index).

Deriving instead of sharing one RNG is what makes batches order-independent: patient 41 is the
same whether it is generated first, last, or in another process.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T")


def derive_int(seed: int, *parts: object) -> int:
    """A 256-bit integer that depends only on the seed and the parts (stable across runs)."""
    text = "\x1f".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=32).digest(), "big")


def rng_for(seed: int, *parts: object) -> random.Random:
    # Mersenne Twister is fine for synthetic records (reproducibility is the point); secrets
    # (account passwords, TOTP keys) are derived with hashlib instead, see accounts.py.
    return random.Random(derive_int(seed, *parts))  # noqa: S311


_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_id(rng: random.Random) -> str:
    """A random UUIDv4: carries nothing about the person or the generation order.

    Same value as ``str(uuid.UUID(int=bits, version=4))``, formatted by hand because uuid.UUID
    was the single most expensive call of patient generation.
    """
    h = f"{rng.getrandbits(128) & _VERSION_MASK | _VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Weighted(Generic[T]):
    """Pick items with fixed weights; cheaper than random.choices for repeated draws."""

    __slots__ = ("_cum", "_items", "_last", "_total")

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self._items = [item for item, _ in pairs]
        self._cum = list(accumulate(weight for _, weight in pairs))
        self._total = self._cum[-1]
        self._last = len(self._items) - 1

    def pick(self, rng: random.Random) -> T:
        # min(): random() * total can round up to total itself, one past the last bucket.
        return self._items[min(bisect(self._cum, rng.random() * self._total), self._last)]


@lru_cache(maxsize=8192)
def _paris_offset(ordinal: int) -> str:
    # Europe/Paris summer time runs from the last Sunday of March to the last Sunday of October;
    # a day-level rule is enough here (no synthetic event is placed in the switch hour).
    day = date.fromordinal(ordinal)
    if 4 <= day.month <= 9:
        return "+02:00"
    if day.month in (3, 10):
        last = date(day.year, day.month, 31)
        last_sunday = last.toordinal() - (last.weekday() + 1) % 7
        summer = ordinal >= last_sunday if day.month == 3 else ordinal < last_sunday
        return "+02:00" if summer else "+01:00"
    return "+01:00"


@lru_cache(maxsize=8192)
def iso_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def iso_datetime(ordinal: int, minutes: int) -> str:
    """Local French time ``minutes`` after midnight of day ``ordinal`` (may spill to next days)."""
    ordinal += minutes // 1440
    minutes %= 1440
    return f"{iso_day(ordinal)}T{minutes // 60:02d}:{minutes % 60:02d}:00{_paris_offset(ordinal)}"

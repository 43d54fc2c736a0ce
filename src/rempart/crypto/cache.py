"""A small, thread-safe cache for unwrapped data keys, bounded in both count and age.

Unwrapping a data key costs a KEK operation (an HSM round trip in production), so hot
patients' keys are kept in memory. The bounds limit what a memory dump of a running server
reveals: at most ``max_entries`` keys, none older than ``ttl_seconds``. Python cannot reliably
wipe ``bytes``, so eviction only drops the reference; the bound is on exposure, not on erasure.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyCache(Generic[K, V]):
    """LRU cache whose entries also expire ``ttl_seconds`` after they were put.

    Age counts from :meth:`put`, not from the last :meth:`get`: a key in constant use is still
    re-fetched (and so re-checked against the provider, e.g. after a crypto-shred) once per TTL.
    """

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        # Value and the clock reading at put(); order = least recently used first.
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, stored_at = entry
            if now - stored_at >= self._ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        with self._lock:
            self._entries[key] = (value, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def evict(self, key: K) -> None:
        """Forget ``key`` now (after a rotation or a crypto-shred). Missing keys are ignored."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """Number of live entries; expired ones are purged first so they are not counted."""
        now = self._clock()
        with self._lock:
            expired = [k for k, (_, at) in self._entries.items() if now - at >= self._ttl]
            for k in expired:
                del self._entries[k]
            return len(self._entries)

from __future__ import annotations

import threading

import pytest

from rempart.crypto import KeyCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_get_returns_what_was_put() -> None:
    cache: KeyCache[str, bytes] = KeyCache(max_entries=4, ttl_seconds=60)
    cache.put("p1", b"k1")
    assert cache.get("p1") == b"k1"
    assert cache.get("p2") is None
    assert len(cache) == 1


def test_entries_expire_after_ttl_counted_from_put() -> None:
    clock = FakeClock()
    cache: KeyCache[str, bytes] = KeyCache(max_entries=4, ttl_seconds=30, clock=clock)
    cache.put("p1", b"k1")
    clock.now += 29.9
    assert cache.get("p1") == b"k1"  # a hit does not extend the lifetime
    clock.now += 0.1
    assert cache.get("p1") is None
    assert len(cache) == 0


def test_len_does_not_count_expired_entries() -> None:
    clock = FakeClock()
    cache: KeyCache[str, int] = KeyCache(max_entries=10, ttl_seconds=10, clock=clock)
    cache.put("old", 1)
    clock.now += 5
    cache.put("new", 2)
    clock.now += 6
    assert len(cache) == 1
    assert cache.get("new") == 2


def test_put_refreshes_age() -> None:
    clock = FakeClock()
    cache: KeyCache[str, int] = KeyCache(max_entries=4, ttl_seconds=10, clock=clock)
    cache.put("p", 1)
    clock.now += 8
    cache.put("p", 2)
    clock.now += 8
    assert cache.get("p") == 2


def test_lru_bound_evicts_least_recently_used() -> None:
    cache: KeyCache[str, int] = KeyCache(max_entries=3, ttl_seconds=60)
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(name, value)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("d", 4)
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(k) for k in ("a", "c", "d")] == [1, 3, 4]


def test_evict_and_clear() -> None:
    cache: KeyCache[str, int] = KeyCache(max_entries=3, ttl_seconds=60)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.evict("a")
    cache.evict("missing")
    assert cache.get("a") is None
    assert cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize(("entries", "ttl"), [(0, 1.0), (1, 0.0), (1, -5.0)])
def test_bad_bounds_are_refused(entries: int, ttl: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        KeyCache(max_entries=entries, ttl_seconds=ttl)


def test_thread_safety_smoke() -> None:
    cache: KeyCache[int, int] = KeyCache(max_entries=64, ttl_seconds=60)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        try:
            start.wait()
            for i in range(5000):
                key = (seed * 7919 + i) % 200
                cache.put(key, key * 2)
                value = cache.get(key)
                # Another thread may have evicted it, but never may a wrong value appear.
                assert value is None or value == key * 2
                if i % 97 == 0:
                    cache.evict(key)
                assert len(cache) <= 64
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 64

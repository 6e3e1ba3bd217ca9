from __future__ import annotations

import asyncio
import threading

import pytest

from processors.cache import ContextCache, run_cache_cleaner


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


A = ("bot", "session-a")
B = ("bot", "session-b")


def test_get_put_and_counters():
    """A stored value is returned (hit); an absent one gives the default (miss)."""
    cache = ContextCache(10, 60)
    cache.put(A, "k", 1)
    assert cache.get(A, "k") == 1
    assert cache.get(A, "other", "dflt") == "dflt"
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 1, 1)
    assert stats["hit_ratio"] == 0.5
    assert (stats["max_size"], stats["ttl_seconds"]) == (10, 60.0)


def test_ttl_expiry_with_fake_timer():
    """An entry lives exactly ttl seconds from its write."""
    timer = FakeTimer()
    cache = ContextCache(10, 10, timer=timer)
    cache.put(A, "k", "v")
    timer.now = 9.99
    assert cache.get(A, "k") == "v"
    timer.now = 10.0
    assert cache.get(A, "k") is None


def test_expire_removes_expired_entries_only():
    """expire() drops what has expired, keeps the rest, and reports the count."""
    timer = FakeTimer()
    cache = ContextCache(10, 10, timer=timer)
    cache.put(A, 1, "old")
    timer.now = 5
    cache.put(A, 2, "new")
    timer.now = 11
    assert cache.expire() == 1
    assert cache.get(A, 2) == "new"
    assert cache.stats()["size"] == 1
    assert cache.stats()["expired"] == 1


def test_entries_expired_by_a_write_are_counted_too():
    """The TTL cache also drops expired entries on every write: those count as expired (not
    as evictions), as those ``expire()`` removes do."""
    timer = FakeTimer()
    cache = ContextCache(10, 10, timer=timer)
    cache.put(A, 1, "old")
    cache.put(B, 1, "old")
    timer.now = 11
    cache.put(A, 2, "new")
    stats = cache.stats()
    assert (stats["size"], stats["expired"], stats["evictions"]) == (1, 2, 0)


def test_lru_eviction_drops_least_recently_used():
    """When full, the least recently *used* entry goes, not the oldest written."""
    cache = ContextCache(2, 60)
    cache.put(A, "a", 1)
    cache.put(A, "b", 2)
    assert cache.get(A, "a") == 1  # a is now more recent than b
    cache.put(A, "c", 3)
    assert cache.get(A, "b") is None
    assert (cache.get(A, "a"), cache.get(A, "c")) == (1, 3)
    assert cache.stats()["evictions"] == 1


def test_scopes_are_isolated():
    """The same key in two scopes holds two values; invalidating one scope spares the other."""
    cache = ContextCache(10, 60)
    cache.put(A, "k", "alice")
    cache.put(B, "k", "bob")
    assert (cache.get(A, "k"), cache.get(B, "k")) == ("alice", "bob")
    assert cache.invalidate_scope(A) == 1
    assert cache.get(A, "k") is None
    assert cache.get(B, "k") == "bob"


@pytest.mark.parametrize("scope", [(), "bot/session", None])
def test_scope_must_be_a_non_empty_tuple(scope):
    """A missing or non-tuple scope is refused, so no entry can be unscoped."""
    with pytest.raises(ValueError):
        ContextCache().put(scope, "k", 1)


def test_get_or_compute_computes_once_and_not_on_error():
    """compute runs on a miss only; a raising compute stores nothing."""
    cache = ContextCache(10, 60)
    calls = []
    assert cache.get_or_compute(A, "k", lambda: calls.append(1) or 42) == (42, False)
    assert cache.get_or_compute(A, "k", lambda: calls.append(1) or 0) == (42, True)
    assert calls == [1]

    def boom() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get_or_compute(A, "bad", boom)
    assert cache.get(A, "bad") is None


def test_thread_safety_smoke():
    """Concurrent readers and writers keep the counters exact and the size bounded."""
    cache = ContextCache(50, 60)
    gets_per_thread, threads = 2000, 8
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(gets_per_thread):
                scope = ("bot", f"s{(n + i) % 5}")
                if cache.get(scope, i % 97) is None:
                    cache.put(scope, i % 97, i)
                if i % 500 == 0:
                    cache.invalidate_scope(scope)
                    cache.expire()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats = cache.stats()
    assert not errors
    assert stats["hits"] + stats["misses"] == gets_per_thread * threads
    assert stats["size"] <= 50


async def test_cache_cleaner_expires_periodically_until_cancelled():
    """The cleaner removes expired entries without any lookup, and stops on cancel."""
    timer = FakeTimer()
    cache = ContextCache(10, 1, timer=timer)
    cache.put(A, "k", 1)
    timer.now = 2
    task = asyncio.create_task(run_cache_cleaner(cache, 0.01))
    async with asyncio.timeout(2):
        while cache.stats()["expired"] == 0:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cache.stats()["size"] == 0

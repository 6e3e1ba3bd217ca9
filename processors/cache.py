"""Session-scoped TTL + LRU cache for context and memory lookups, shared by the thread pool."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cachetools import TTLCache

T = TypeVar("T")
_MISSING = object()


class _CountingTTLCache(TTLCache):  # type: ignore[type-arg]
    """TTLCache that counts LRU evictions (``popitem`` is only called to make room) and
    expirations (``expire`` also runs inside every write, not only when called)."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, timer=timer)
        self.evictions = 0
        self.expirations = 0

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self.evictions += 1
        return item

    def expire(self, time: float | None = None) -> list[tuple[Any, Any]]:
        expired: list[tuple[Any, Any]] = super().expire(time)
        self.expirations += len(expired)
        return expired


class ContextCache:
    """Entries keyed by ``(scope, key)``; the scope (e.g. ``(bot_id, session_id)``) is always part
    of the key, so nothing is shared across sessions or bots.

    cachetools.TTLCache is both the expiry and the least-recently-used bound we need, in one
    well-kept structure. Every method takes an internal lock (callers run in the thread pool)
    and never blocks on anything else. ``timer`` returns seconds (monotonic) and is injectable.
    """

    def __init__(
        self,
        max_size: int = 5000,
        ttl_seconds: float = 120.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1 or ttl_seconds <= 0:
            raise ValueError("max_size must be >= 1 and ttl_seconds > 0")
        self._cache = _CountingTTLCache(max_size, ttl_seconds, timer)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @staticmethod
    def _full_key(scope: tuple[Hashable, ...], key: Hashable) -> tuple[Any, Any]:
        if not isinstance(scope, tuple) or not scope:
            raise ValueError("scope must be a non-empty tuple, e.g. (bot_id, session_id)")
        return (scope, key)

    def get(self, scope: tuple[Hashable, ...], key: Hashable, default: Any = None) -> Any:
        """The live value under ``(scope, key)`` or ``default``; counts a hit or a miss."""
        full = self._full_key(scope, key)
        with self._lock:
            value = self._cache.get(full, _MISSING)
            if value is _MISSING:
                self._misses += 1
                return default
            self._hits += 1
            return value

    def put(self, scope: tuple[Hashable, ...], key: Hashable, value: Any) -> None:
        """Store ``value``; may evict the least recently used entry when full."""
        full = self._full_key(scope, key)
        with self._lock:
            self._cache[full] = value

    def get_or_compute(
        self, scope: tuple[Hashable, ...], key: Hashable, compute: Callable[[], T]
    ) -> tuple[T, bool]:
        """``(value, hit)``. On a miss ``compute()`` runs outside the lock (it may be slow) and its
        result is stored; two racing callers may both compute, the last write wins. Exceptions
        of ``compute`` propagate and nothing is stored."""
        value = self.get(scope, key, _MISSING)
        if value is not _MISSING:
            return value, True
        value = compute()
        self.put(scope, key, value)
        return value, False

    def expire(self) -> int:
        """Remove expired entries now; returns how many were removed."""
        with self._lock:
            return len(self._cache.expire())

    def invalidate_scope(self, scope: tuple[Hashable, ...]) -> int:
        """Drop every entry of ``scope`` (O(size)); returns how many live entries were dropped."""
        self._full_key(scope, None)
        with self._lock:
            self._cache.expire()
            doomed = [k for k in list(self._cache.keys()) if k[0] == scope]
            for full in doomed:
                self._cache.pop(full, None)
            return len(doomed)

    def clear(self) -> None:
        """Drop everything (counters are kept)."""
        with self._lock:
            self._cache.clear()

    def stats(self) -> dict[str, Any]:
        """size (live entries), max_size, ttl_seconds, hits, misses, hit_ratio, evictions (LRU),
        expired. A low hit_ratio with high evictions says CONTEXT_CACHE_MAX_SIZE is too small."""
        with self._lock:
            self._cache.expire()
            lookups = self._hits + self._misses
            return {
                "size": len(self._cache),
                "max_size": int(self._cache.maxsize),
                "ttl_seconds": float(self._cache.ttl),
                "hits": self._hits,
                "misses": self._misses,
                "hit_ratio": self._hits / lookups if lookups else 0.0,
                "evictions": self._cache.evictions,
                "expired": self._cache.expirations,
            }


async def run_cache_cleaner(cache: ContextCache, interval_s: float) -> None:
    """Call ``cache.expire()`` every ``interval_s`` seconds until cancelled (never returns).

    Expiry also happens lazily on writes; this bounds how long dead entries hold memory while
    the cache is idle.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    while True:
        await asyncio.sleep(interval_s)
        cache.expire()

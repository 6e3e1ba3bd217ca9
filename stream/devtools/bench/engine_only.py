"""Benchmarks of the engine alone (no Kafka), through the Python API."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from typing import Any

from stream.app.api import create_concurrent_conversation_manager
from stream.observability.stats import percentile

__all__ = ["memory_run", "zipf_sessions"]


def zipf_sessions(count: int, sessions: int, s: float = 1.1, seed: int = 5) -> list[int]:
    """``count`` session numbers drawn from a Zipf distribution over ``sessions`` ranks: a few
    busy conversations and a long tail, as chat traffic is."""
    weights = [1 / (rank ** s) for rank in range(1, sessions + 1)]
    return random.Random(seed).choices(range(sessions), weights=weights, k=count)


async def memory_run(cache_size: int, events: int = 20_000, sessions: int = 1_000,
                     concurrency: int = 200) -> dict[str, Any]:
    """The memory step (TF-IDF over the session's history, index in the context cache) for
    Zipf-distributed sessions; the cache's hit ratio and the step's latency."""
    manager = await create_concurrent_conversation_manager(**_settings(cache_size))
    order = zipf_sessions(events, sessions)
    gate = asyncio.Semaphore(concurrency)
    durations: list[float] = []

    async def one(i: int, session: int) -> None:
        async with gate:
            response = await manager.process_conversation_message(
                user_id=f"u{session}", channel_id=f"c{session}", bot_id="bench",
                content=f"my order {session % 7} parcel number {i % 13} still has not arrived")
        durations.append(response.analysis["memory"].duration_ms)

    await asyncio.gather(*(one(i, s) for i, s in enumerate(order)))
    stats = manager.get_performance_stats()["cache"]
    await manager.stop()
    return {"events": events, "hit_ratio": round(stats["hit_ratio"], 4),
            "lru_hit_ratio": round(lru_hit_ratio(order, cache_size), 4),
            "evictions": stats["evictions"],
            "memory_step_mean_ms": round(sum(durations) / max(len(durations), 1), 3),
            "memory_step_p99_ms": round(percentile(durations, 99), 3)}


def lru_hit_ratio(order: list[int], size: int) -> float:
    """The hit ratio a plain LRU of ``size`` entries, one per session, gets on ``order``: the
    reference the context cache's own ratio is read against."""
    kept: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for session in order:
        if session in kept:
            hits += 1
            kept.move_to_end(session)
        else:
            kept[session] = None
            if len(kept) > size:
                kept.popitem(last=False)
    return hits / max(len(order), 1)


def _settings(cache_size: int) -> dict[str, Any]:
    return {"builtin_processors": "memory,reply", "context_cache_max_size": cache_size,
            "max_in_flight": 256,
            "max_concurrent_sessions": 1_000, "max_worker_threads": 2,
            "max_worker_processes": 1}

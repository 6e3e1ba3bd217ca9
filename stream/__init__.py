"""chatstream's Kafka runtime: consumer loop, scheduling, sessions, offsets, stats.

The engine is also usable without Kafka::

    from stream import create_concurrent_conversation_manager

    manager = await create_concurrent_conversation_manager(max_concurrent_sessions=500)
    response = await manager.process_conversation_message(
        user_id="u1", channel_id="c1", content="hello", bot_id="b1")
    print(manager.get_performance_stats())
    await manager.stop()
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConversationManagerAPI", "create_concurrent_conversation_manager"]


def __getattr__(name: str) -> Any:
    # Lazy: processors import stream.settings, and an eager import here would be circular.
    if name in __all__:
        from stream import api

        return getattr(api, name)
    raise AttributeError(f"module 'stream' has no attribute {name!r}")

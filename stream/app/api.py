"""The Python API of the conversation engine, for use without Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from processors.base import Processor
from schemas.events import ChatEvent, MessageType, Priority, ResponseEvent
from schemas.limits import InputLimits
from stream.app.wiring import build_engine
from stream.engine.concurrent import ConcurrentConversationManager
from stream.engine.sequential import BasicEngine
from stream.settings import load_settings

__all__ = ["ConversationManagerAPI", "create_concurrent_conversation_manager"]


class ConversationManagerAPI:
    """A started engine with the call-per-message interface.

    ``process_conversation_message`` waits for the response (it blocks while the conversation's
    earlier messages are processed, and while the engine is at its in-flight limit).
    """

    def __init__(self, engine: ConcurrentConversationManager | BasicEngine,
                 limits: InputLimits | None = None) -> None:
        self.engine = engine
        self._limits = limits or InputLimits()  # the settings' limits, as on the inbound topic

    async def process_conversation_message(
        self, *, user_id: str, channel_id: str, content: str, bot_id: str = "default-bot",
        priority: Priority | str | None = None, metadata: Mapping[str, Any] | None = None,
        message_type: MessageType | str = MessageType.MESSAGE, event_id: str | None = None,
    ) -> ResponseEvent:
        event = ChatEvent.model_validate({
            "event_id": event_id or str(uuid.uuid4()), "bot_id": bot_id,
            "channel_id": channel_id, "user_id": user_id, "content": content,
            "timestamp": datetime.now(UTC),
            "priority": Priority(priority) if priority is not None else None,
            "message_type": MessageType(message_type),
            "metadata": dict(metadata) if metadata is not None else None,
        }, context=self._limits)
        waiter: asyncio.Future[ResponseEvent] = asyncio.get_running_loop().create_future()
        self.engine.submit(event, waiter=waiter)
        return await waiter

    def get_performance_stats(self) -> dict[str, Any]:
        return self.engine.get_performance_stats()

    async def stop(self, timeout_s: float | None = None) -> None:
        await self.engine.stop(timeout_s)


async def create_concurrent_conversation_manager(
    *, processors: Sequence[Processor] | None = None, **settings: Any
) -> ConversationManagerAPI:
    """A started manager. Keyword arguments override settings by field name (see Settings),
    e.g. ``max_concurrent_sessions=100``; ``processors`` replaces the default processors."""
    chosen = load_settings(**settings)
    engine = build_engine(chosen, processors=processors)
    await engine.start()
    return ConversationManagerAPI(engine, chosen.input_limits)

"""chatstream's runtime: the Kafka member, the engine, observability and the wiring.

Layers, each a subpackage: ``stream.kafka`` (the group member: consume loop, commit ledger,
hand-overs, readiness, the publishing sink), ``stream.engine`` (no Kafka, no I/O: admission,
priority, scheduler, sessions, the concurrent and the sequential engine),
``stream.observability`` (tracing, metrics, stats, HTTP endpoints), ``stream.app`` (CLI,
service, wiring, plugins, the Python API), ``stream.botkit`` (how a bot talks to chatstream)
and ``stream.devtools`` (demo, benchmarks, simulated bots).

The engine is also usable without Kafka::

    from stream import create_concurrent_conversation_manager

    manager = await create_concurrent_conversation_manager(max_concurrent_sessions=500)
    response = await manager.process_conversation_message(
        user_id="u1", channel_id="c1", content="hello", bot_id="b1")
    print(manager.get_performance_stats())
    await manager.stop()
"""

from __future__ import annotations

from stream.app.api import ConversationManagerAPI, create_concurrent_conversation_manager
from stream.settings import Settings, SettingsError, load_settings

__all__ = [
    "ConversationManagerAPI",
    "Settings",
    "SettingsError",
    "create_concurrent_conversation_manager",
    "load_settings",
]

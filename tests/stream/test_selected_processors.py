"""CHATSTREAM_PROCESSORS picks the built-in processors; plugins may replace one by name."""

from __future__ import annotations

import pytest

from processors.cache import ContextCache
from stream import create_concurrent_conversation_manager
from stream.app.wiring import selected_processors
from stream.settings import SettingsError, load_settings


def names(**settings: object) -> list[str]:
    cache = ContextCache(max_size=10, ttl_seconds=60)
    return [p.name for p in selected_processors(load_settings(**settings), cache)]


def test_all_built_ins_run_by_default():
    """Without the setting, emotion, memory, thread and reply run, in that order."""
    assert names() == ["emotion", "memory", "thread", "reply"]


def test_a_subset_keeps_the_fixed_order():
    """Listed out of order, the chosen built-ins still run in their fixed order."""
    assert names(builtin_processors="reply, thread") == ["thread", "reply"]


def test_empty_means_no_built_in():
    """An empty list runs none of the built-ins (a plugin brings the steps)."""
    assert names(builtin_processors="") == []


def test_an_unknown_name_is_a_configuration_error():
    """A misspelt name fails at start-up, naming the known ones."""
    with pytest.raises(SettingsError, match=r"CHATSTREAM_PROCESSORS.*emotion"):
        names(builtin_processors="reply,emotions")


def test_a_plugin_named_like_a_built_in_replaces_it():
    """A plugin 'reply' takes the built-in reply's place instead of clashing with it."""
    chosen = names(builtin_processors="thread,reply", processor_plugins="reply_plugin:processors")
    assert chosen == ["thread", "reply"]


async def test_the_replacing_plugin_answers(monkeypatch):
    """The plugin's reply is the one in the response, and only the chosen steps ran."""
    monkeypatch.setenv("CHATSTREAM_PROCESSORS", "thread,reply")
    monkeypatch.setenv("CHATSTREAM_PROCESSOR_PLUGINS", "reply_plugin:processors")
    manager = await create_concurrent_conversation_manager()
    response = await manager.process_conversation_message(
        user_id="u", channel_id="c", bot_id="b", content="hello there")
    await manager.stop()
    assert set(response.analysis) == {"thread", "reply"}
    assert response.reply == "echo: hello there"

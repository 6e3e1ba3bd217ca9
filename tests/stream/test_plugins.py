"""Custom processors reach `chatstream run` through CHATSTREAM_PROCESSOR_PLUGINS."""

from __future__ import annotations

import pytest

from stream import create_concurrent_conversation_manager
from stream.app.plugins import load_plugin_processors
from stream.settings import SettingsError, load_settings


def test_plugin_factory_is_loaded():
    """A 'module:factory' entry yields the factory's processors."""
    settings = load_settings(processor_plugins="processors.examples:plugin_processors")
    assert [p.name for p in load_plugin_processors(settings)] == ["text_stats"]


@pytest.mark.parametrize("spec", ["no.such.module:f", "processors.examples:missing"])
def test_bad_plugin_is_a_configuration_error(spec):
    """A plugin that cannot be imported or called is a one-line configuration error."""
    with pytest.raises(SettingsError, match="CHATSTREAM_PROCESSOR_PLUGINS"):
        load_plugin_processors(load_settings(processor_plugins=spec))


async def test_plugin_runs_next_to_the_default_processors():
    """The plugin's process-pool step answers beside emotion, memory, thread and reply."""
    manager = await create_concurrent_conversation_manager(
        processor_plugins="processors.examples:plugin_processors", max_worker_processes=1)
    response = await manager.process_conversation_message(
        user_id="u", channel_id="c", bot_id="b", content="Short words. Easy to read.")
    await manager.stop()
    assert set(response.analysis) == {"emotion", "memory", "thread", "reply", "text_stats"}
    assert response.analysis["text_stats"].data["sentences"] == 2
    assert response.reply

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


@pytest.mark.parametrize("spec,reason", [
    ("no_such_module:factory", "no module named 'no_such_module' (expected 'module:factory', "
     "the factory returning processors; is the module on PYTHONPATH?)"),
    ("plugin_with_a_missing_dependency:f", "importing plugin_with_a_missing_dependency failed: "
     "ModuleNotFoundError: No module named 'plugin_with' (at "
     "plugin_with_a_missing_dependency.py:4)"),
    ("mistaken_plugins:absent", "mistaken_plugins has no factory 'absent' (expected "
     "'module:factory'; 'module' alone means 'module:processors')"),
    ("mistaken_plugins", "mistaken_plugins has no factory 'processors' (expected "
     "'module:factory'; 'module' alone means 'module:processors')"),
    ("mistaken_plugins:needs_a_variable", "its factory failed: KeyError: 'MY_SERVICE_URL' (at "
     "mistaken_plugins.py:11)"),
    ("mistaken_plugins:yielding", "its factory failed: KeyError: 'MY_SERVICE_URL' (at "
     "mistaken_plugins.py:32)"),
    ("mistaken_plugins:one_instance", "its factory must return an iterable of processor "
     "instances, got TextStatsProcessor"),
    ("mistaken_plugins:without_timeout", "NoTimeout is not a Processor: it lacks stage, "
     "timeout_s (a Processor has name, kind, stage, timeout_s and process(context))"),
])
def test_each_plugin_mistake_is_named_for_what_it_is(spec, reason):
    """Whether the entry is wrong (no such module or factory) or what its factory did, with
    the line that raised; the hint about the entry's form only where the form may be at fault."""
    with pytest.raises(SettingsError) as refused:
        load_plugin_processors(load_settings(processor_plugins=spec))
    assert str(refused.value) == f"invalid CHATSTREAM_PROCESSOR_PLUGINS entry {spec!r}: {reason}"


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

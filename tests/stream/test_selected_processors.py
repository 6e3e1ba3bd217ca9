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


def kinds(**settings: object) -> dict[str, str]:
    cache = ContextCache(max_size=10, ttl_seconds=60)
    return {p.name: p.kind.value for p in selected_processors(load_settings(**settings), cache)}


def test_cheap_cpu_steps_run_on_the_loop_by_default():
    """Emotion and memory run inline (a pool hop costs more than they do); the rest keep theirs."""
    assert kinds() == {"emotion": "inline", "memory": "inline", "thread": "async",
                       "reply": "async"}


def test_a_step_can_be_moved_to_a_pool():
    """CHATSTREAM_PROCESSOR_KINDS sends emotion back to the process pool, memory to a thread."""
    chosen = kinds(processor_kinds="emotion=process,memory=thread")
    assert chosen["emotion"] == "process" and chosen["memory"] == "thread"


@pytest.mark.parametrize("setting", ["reply=thread", "emotion=async", "emotion=gpu", "emotion"])
def test_a_kind_that_cannot_fit_is_a_configuration_error(setting):
    """A coroutine step cannot leave the loop, a plain one cannot become async, and unknown
    kinds are refused, each naming the setting."""
    with pytest.raises(SettingsError, match="CHATSTREAM_PROCESSOR_KINDS"):
        kinds(processor_kinds=setting)


def test_a_plugin_replacing_an_inline_built_in_keeps_its_own_kind_and_place():
    """Emotion and memory run inline only as the built-ins: a blocking plugin 'memory' stays
    in the thread pool, an async plugin 'emotion' stays a coroutine, each in its built-in's
    place in the order."""
    cache = ContextCache(max_size=10, ttl_seconds=60)
    chosen = selected_processors(load_settings(processor_plugins="kinds_plugin:replacements"),
                                 cache)
    assert [(p.name, p.kind.value, type(p).__name__) for p in chosen] == [
        ("emotion", "async", "AsyncEmotion"), ("memory", "thread", "BlockingMemory"),
        ("thread", "async", "ThreadProcessor"), ("reply", "async", "ReplyProcessor")]


def test_naming_one_step_leaves_the_others_where_they_were():
    """The README's example moves emotion to the process pool; memory stays inline."""
    assert kinds(processor_kinds="emotion=process") == {
        "emotion": "process", "memory": "inline", "thread": "async", "reply": "async"}


@pytest.mark.parametrize(("setting", "named"), [
    ("emotoin=process", "'emotoin'"),
    ("memory=thread", "'memory'"),  # not running: only reply is chosen
])
def test_a_kinds_entry_for_no_running_step_is_refused(setting, named):
    """A misspelt or absent step name fails at start-up, listing the steps that run."""
    builtin = "reply" if setting.startswith("memory") else "emotion,memory,thread,reply"
    with pytest.raises(SettingsError, match=rf"CHATSTREAM_PROCESSOR_KINDS names {named}.*reply"):
        kinds(processor_kinds=setting, builtin_processors=builtin)


def test_a_step_that_cannot_go_to_the_process_pool_is_a_configuration_error():
    """The memory step holds a lock and a cache: it cannot be sent to a process."""
    with pytest.raises(SettingsError, match=r"CHATSTREAM_PROCESSOR_KINDS: memory.*picklable"):
        kinds(processor_kinds="memory=process")


@pytest.mark.parametrize(("factory", "says"), [
    ("not_processors", "is not a Processor"),
    ("a_class", "BlockingMemory is a class, not a Processor: pass an instance"),
    ("twice", "more than one processor named 'emotion'"),
])
def test_a_plugin_mistake_is_a_configuration_error_naming_it(factory, says):
    with pytest.raises(SettingsError, match=rf"CHATSTREAM_PROCESSOR_PLUGINS.*({says})"):
        names(processor_plugins=f"kinds_plugin:{factory}")


def test_the_steps_that_will_run_are_logged_once_at_start(caplog):
    """Which steps run, in which stage and where, without sending an event to find out."""
    import logging

    from stream.app.wiring import build_pipeline

    settings = load_settings(builtin_processors="thread,reply",
                             processor_plugins="reply_plugin:processors")
    with caplog.at_level(logging.INFO, logger="stream.app.wiring"):
        pipeline, _ = build_pipeline(settings)
    pipeline.close()
    assert [r.getMessage() for r in caplog.records] == [
        "steps: thread (analysis, async), reply (compose, async)"]

"""The member's event loop choice (CHATSTREAM_EVENT_LOOP)."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from stream.app.service import loop_factory
from stream.settings import EventLoopChoice, SettingsError, load_settings


def test_auto_is_the_default_and_picks_uvloop_when_installed() -> None:
    assert load_settings().event_loop is EventLoopChoice.AUTO
    factory = loop_factory(EventLoopChoice.AUTO)
    assert factory is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)


def test_asyncio_keeps_the_standard_loop() -> None:
    assert loop_factory(EventLoopChoice.ASYNCIO) is None


def test_without_uvloop_auto_falls_back_and_uvloop_says_what_to_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory(EventLoopChoice.AUTO) is None
    with pytest.raises(RuntimeError, match="pip install uvloop"):
        loop_factory(EventLoopChoice.UVLOOP)


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSTREAM_EVENT_LOOP", "asyncio")
    assert load_settings().event_loop is EventLoopChoice.ASYNCIO
    monkeypatch.setenv("CHATSTREAM_EVENT_LOOP", "tokio")
    with pytest.raises(SettingsError, match=r"CHATSTREAM_EVENT_LOOP=.tokio.*uvloop"):
        load_settings()

"""Processors from plugins: CHATSTREAM_PROCESSOR_PLUGINS="package.module:factory,…".

Each factory is called with the Settings and returns an iterable of processors, which join the
default ones. This is how ``chatstream run`` gets custom processors without code changes.
"""

from __future__ import annotations

import importlib

from processors.base import Processor
from processors.registry import validate_processor
from stream.settings import Settings, SettingsError


def load_plugin_processors(settings: Settings) -> list[Processor]:
    """Import and call every configured factory; SettingsError names the one that fails."""
    found: list[Processor] = []
    for spec in filter(None, (part.strip() for part in settings.processor_plugins.split(","))):
        module_name, _, attribute = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute or "processors")
            made: list[Processor] = list(factory(settings))
            for processor in made:  # a mistake named here, not on the first event
                validate_processor(processor)
            found.extend(made)
        except Exception as exc:
            raise SettingsError(
                f"invalid CHATSTREAM_PROCESSOR_PLUGINS entry {spec!r}: {type(exc).__name__}: "
                f"{exc} (expected 'module:factory', the factory returning processors)"
            ) from None
    return found

"""Processors from plugins: CHATSTREAM_PROCESSOR_PLUGINS="package.module:factory,…".

Each factory is called with the Settings and returns an iterable of processor instances, which
join the default ones (one named like a built-in takes its place). ``module`` alone stands for
``module:processors``. This is how ``chatstream run`` gets custom processors without code
changes. An entry that cannot be used is a ``SettingsError`` naming it, and saying whether the
entry itself is wrong (no such module or factory) or what its factory did or returned is.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Iterable
from pathlib import Path

from processors.base import Processor
from processors.registry import validate_processor
from stream.settings import Settings, SettingsError


def load_plugin_processors(settings: Settings) -> list[Processor]:
    """Import and call every configured factory; SettingsError names the one that fails."""
    found: list[Processor] = []
    for spec in filter(None, (part.strip() for part in settings.processor_plugins.split(","))):
        found.extend(_processors_of(spec, settings))
    return found


def _processors_of(spec: str, settings: Settings) -> list[Processor]:
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "processors"

    def refused(why: str) -> SettingsError:
        return SettingsError(f"invalid CHATSTREAM_PROCESSOR_PLUGINS entry {spec!r}: {why}")

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):  # the entry's own module
            raise refused(f"no module named {exc.name!r} (expected 'module:factory', the "
                          "factory returning processors; is the module on PYTHONPATH?)") from None
        raise refused(f"importing {module_name} failed: {_described(exc)}") from exc
    except Exception as exc:
        raise refused(f"importing {module_name} failed: {_described(exc)}") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise refused(f"{module_name} has no factory {attribute!r} (expected 'module:factory'; "
                      "'module' alone means 'module:processors')")
    try:
        made = factory(settings)
    except Exception as exc:
        raise refused(f"its factory failed: {_described(exc)}") from exc
    if not isinstance(made, Iterable) or isinstance(made, str | bytes):
        raise refused(f"its factory must return an iterable of processor instances, got "
                      f"{type(made).__name__}")
    processors: list[Processor] = list(made)
    for processor in processors:  # a mistake named here, not on the first event
        try:
            validate_processor(processor)
        except (TypeError, ValueError) as exc:
            raise refused(str(exc)) from None
    return processors


def _described(error: BaseException) -> str:
    """The error and where it was raised (the line of the innermost frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"

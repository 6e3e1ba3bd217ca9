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
from types import ModuleType

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
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):  # the entry's own
            raise refused(f"no module named {exc.name!r} (expected 'module:factory', the "
                          "factory returning processors; is the module on PYTHONPATH?)") from None
        raise refused(f"importing {module_name} failed: {_described(exc)}") from exc
    except Exception as exc:  # SyntaxError included: its message names the file and line
        raise refused(f"importing {module_name} failed: {_described(exc)}") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise refused(f"{module_name} has no factory {attribute!r} (expected 'module:factory'; "
                      "'module' alone means 'module:processors')")
    try:
        made = factory(settings)
        iterable = isinstance(made, Iterable) and not isinstance(made, str | bytes)
        processors: list[Processor] = list(made) if iterable else []  # a generator runs here
    except Exception as exc:
        raise refused(f"its factory failed: {_described(exc, module)}") from exc
    if not iterable:
        raise refused(f"its factory must return an iterable of processor instances, got "
                      f"{type(made).__name__}")
    for processor in processors:  # a mistake named here, not on the first event
        try:
            validate_processor(processor)
        except (TypeError, ValueError) as exc:
            raise refused(str(exc)) from None
    return processors


def _described(error: BaseException, module: ModuleType | None = None) -> str:
    """The error and where it was raised: the innermost line in ``module``'s file when it has
    one there, else the innermost line outside the import machinery (none for a SyntaxError,
    whose message names its own)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith("<frozen")]
    own = getattr(module, "__file__", None)
    if own is not None and any(frame.filename == own for frame in frames):
        frames = [frame for frame in frames if frame.filename == own]
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" \
        if frames and not isinstance(error, SyntaxError) else ""
    return f"{type(error).__name__}: {error}{where}"

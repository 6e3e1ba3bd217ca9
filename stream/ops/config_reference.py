"""The configuration reference, generated from the settings model: one Markdown table row per
field of ``Settings`` (environment variable, default, accepted values, the field's description).

``render()`` is pure and the same on every machine: defaults computed from the CPU count at
import are shown as their formula. A document embeds the table between ``START`` and ``END``;
``check_file`` raises ``ReferenceMismatch`` when its copy differs from the model (or the markers
are missing), ``write_file`` rewrites the copy in place.
"""

from __future__ import annotations

import difflib
import enum
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from stream.settings import Settings

__all__ = ["END", "START", "ReferenceMismatch", "check_file", "render", "rows", "write_file"]

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"

# Computed from os.cpu_count() when stream.settings is imported: the formula, not this host's value.
_COMPUTED_DEFAULTS = {
    "max_worker_threads": "min(2 * cpu, 16)",
    "max_worker_processes": "min(cpu, 8)",
    "workers": "cpu count",
}


class ReferenceMismatch(Exception):
    """A document's configuration reference is missing or differs from the settings model."""


def _code(value: object) -> str:
    return f"`{value}`"


def _variables(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    names = alias.choices if isinstance(alias, AliasChoices) else [name.upper()]
    return " / ".join(_code(n) for n in names)


def _default(name: str, field: FieldInfo) -> str:
    if name in _COMPUTED_DEFAULTS:
        return _COMPUTED_DEFAULTS[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, enum.Enum):
        return _code(value.value)
    if isinstance(value, float) and value.is_integer():
        return _code(int(value))
    return _code(value)


def _bounds(field: FieldInfo, symbol: str) -> str:
    low = high = ""
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{item.ge} ≤ "
        elif isinstance(item, annotated_types.Gt):
            low = f"{item.gt} < "
        elif isinstance(item, annotated_types.Le):
            high = f" ≤ {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f" < {item.lt}"
    return f"{low}{symbol}{high}" if low or high else symbol


def _values(field: FieldInfo) -> str:
    annotation: Any = field.annotation
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = len(members) < len(typing.get_args(annotation)), members[0]
    if typing.get_origin(annotation) is typing.Literal:
        text = " \\| ".join(_code(v) for v in typing.get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        text = " \\| ".join(_code(member.value) for member in annotation)
    elif annotation is bool:
        text = "`true` \\| `false`"
    elif annotation is int:
        text = _bounds(field, "integer")
    elif annotation is float:
        text = _bounds(field, "number")
    elif annotation is SecretStr:
        text = "secret text"
    elif any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in field.metadata):
        text = "non-empty text"
    else:
        text = "text"
    return text + (", or unset" if optional else "")


def rows(model: type[BaseModel] = Settings) -> list[tuple[str, str, str, str]]:
    """(variables, default, values, meaning) of every setting, in the model's order."""
    return [(_variables(name, field), _default(name, field), _values(field),
             (field.description or "").replace("|", "\\|"))
            for name, field in model.model_fields.items()]


def render(model: type[BaseModel] = Settings) -> str:
    """The Markdown table (no markers), ending without a newline."""
    lines = ["| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows(model)]
    return "\n".join(lines)


def _split(text: str, path: Path) -> tuple[str, str, str]:
    head, start, rest = text.partition(START)
    body, end, tail = rest.partition(END)
    if not start or not end:
        raise ReferenceMismatch(f"{path}: no {START} ... {END} block to hold the reference")
    return head, body, tail


def check_file(path: Path) -> None:
    """Raise ``ReferenceMismatch`` (with a short diff) unless ``path`` embeds ``render()``."""
    _, body, _ = _split(path.read_text(encoding="utf-8"), path)
    expected = render()
    if body.strip() == expected:
        return
    diff = difflib.unified_diff(body.strip().splitlines(), expected.splitlines(),
                                f"{path} (now)", "settings model", lineterm="", n=0)
    shown = "\n".join(list(diff)[:40])
    raise ReferenceMismatch(f"{path} is out of date; run 'chatstream config reference --write "
                            f"{path}'\n{shown}")


def write_file(path: Path) -> bool:
    """Put ``render()`` between the markers of ``path``; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    head, _, tail = _split(text, path)
    updated = f"{head}{START}\n{render()}\n{END}{tail}"
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True

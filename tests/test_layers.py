"""The layers keep their direction: each package imports only what sits below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> first-party packages (or subpackages) it must never import
FORBIDDEN = {
    "schemas": ("stream", "processors", "infra"),
    "processors": ("stream", "infra"),
    "infra": ("stream", "processors"),
    "stream/engine": ("stream.kafka", "stream.app", "stream.devtools", "stream.botkit",
                      "aiokafka"),
    "stream/kafka": ("stream.app", "stream.devtools", "stream.botkit"),
    "stream/observability": ("stream.app", "stream.devtools", "stream.botkit"),
    "stream/botkit": ("stream.app", "stream.devtools", "stream.ops"),
    "stream/ops": ("stream.app", "stream.devtools", "stream.botkit"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    """No module of the package imports (even for typing) a layer it must not depend on."""
    offending = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package]):
                offending.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offending == []

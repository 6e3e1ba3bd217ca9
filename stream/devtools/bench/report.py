"""The benchmark's outputs: JSON (everything), a Markdown table, and a PNG chart of the targets.

The chart plots each target's figure as a share of its goal (goal / figure where lower is
better), so targets in different units sit on one axis and 1.0 is the line to reach.
"""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

import orjson

__all__ = ["machine", "write_chart", "write_json", "write_markdown"]


def machine() -> dict[str, Any]:
    import os

    import psutil

    return {"python": platform.python_version(), "system": platform.platform(),
            "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def _cell(value: Any) -> str:
    if value is None:  # a figure that has nothing to stand on (e.g. a ratio to a failed run)
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(document: dict[str, Any]) -> str:
    lines = ["| scenario | target | figure | goal | met |", "| --- | --- | --- | --- | --- |"]
    for target in document["targets"]:
        lines.append(f"| {target['scenario']} | {target['target']} | "
                     f"{_cell(target['figure'])} {target['unit']} | {_cell(target['goal'])} "
                     f"{target['unit']} | {'yes' if target['met'] else 'no'} |")
    for scenario in document["scenarios"]:
        keys = sorted({key for row in scenario["rows"] for key in row} - {"run"})
        lines += ["", f"**{scenario['name']}**", "",
                  "| run | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
        for row in scenario["rows"]:
            lines.append(f"| {row['run']} | " + " | ".join(_cell(row.get(k, "")) for k in keys)
                         + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, document: dict[str, Any]) -> str:
    text = markdown(document)
    path.write_text(text)
    return text


def write_chart(path: Path, document: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    targets = document["targets"]
    if not targets:
        return
    shares = [_share(t) for t in targets]
    labels = [t["target"] for t in targets]
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(targets) + 1.5))
    colours = ["#2e7d32" if t["met"] else "#c62828" for t in targets]
    axes.barh(range(len(targets)), [min(s, 3.0) for s in shares], color=colours)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks(range(len(targets)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("figure as a share of its goal (1.0 = goal; capped at 3)")
    axes.set_title(f"chatstream bench on {document['machine']['cpus']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _share(target: dict[str, Any]) -> float:
    figure, goal = float(target["figure"]), float(target["goal"])
    if target["goal"] == 0:  # a count that must be zero
        return 1.0 if figure == 0 else 0.0
    if not math.isfinite(figure):
        return 0.0
    return figure / goal if _higher_is_better(target) else (goal / figure if figure else 3.0)


def _higher_is_better(target: dict[str, Any]) -> bool:
    return bool(target.get("higher_is_better", True))

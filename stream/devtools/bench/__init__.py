"""``chatstream bench``: scenarios on fresh embedded brokers, each against a reference run in
the same process, written as JSON, a Markdown table and a PNG chart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from stream.devtools.bench.report import machine, write_chart, write_json, write_markdown
from stream.devtools.bench.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "run_bench"]


async def run_bench(names: Sequence[str], out_dir: Path, profile: bool = False,
                    docs: Path | None = None) -> dict[str, Any]:
    """Run the scenarios called ``names`` (all for "all"), in the order of ``SCENARIOS``;
    write bench.json, bench.md and bench.png to ``out_dir`` (and the table and chart to
    ``docs`` when given); return the document."""
    chosen = list(SCENARIOS) if "all" in names else [n for n in SCENARIOS if n in names]
    out_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"machine": machine(), "scenarios": [], "targets": []}
    console = Console(stderr=True)
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total} scenarios"), TimeElapsedColumn(), console=console,
                  # Twice a second is enough for a bar and a clock, and each redraw takes
                  # CPU from the members on the same cores.
                  refresh_per_second=2) as progress:
        task = progress.add_task("bench", total=len(chosen))
        for name in chosen:
            progress.update(task, description=name)
            result = await SCENARIOS[name](
                lambda text: progress.update(task, description=text),
                profile_dir=out_dir if profile else None)
            document["scenarios"].append({"name": result.name, "rows": result.rows})
            document["targets"] += result.targets
            progress.advance(task)
    document["seconds"] = round(time.monotonic() - started, 1)
    write_json(out_dir / "bench.json", document)
    table = write_markdown(out_dir / "bench.md", document)
    write_chart(out_dir / "bench.png", document)
    if docs is not None:
        _write_docs(docs, document, table, out_dir / "bench.png")
    print(table)
    print(f"{len(chosen)} scenarios in {document['seconds']:.0f} s; results in {out_dir}")
    return document


def _write_docs(path: Path, document: dict[str, Any], table: str, chart: Path) -> None:
    about = document["machine"]
    chart_copy = path.with_suffix(".png")
    chart_copy.write_bytes(chart.read_bytes())
    path.write_text(
        "# Benchmarks\n\n"
        "Written by `chatstream bench all --docs docs/benchmarks.md`. Every scenario runs on a "
        "fresh embedded broker on the same machine as the members and the load, and compares "
        "against a reference measured in the same run; absolute rates depend on the machine, "
        "the ratios travel better.\n\n"
        f"Machine: {about['cpus']} cores, {about['memory_gib']} GiB, {about['system']}, Python "
        f"{about['python']}. Whole run: {document['seconds']:.0f} s.\n\n"
        f"![targets]({chart_copy.name})\n\n{table}")


def main(names: Sequence[str], out_dir: Path, profile: bool, docs: Path | None) -> None:
    asyncio.run(run_bench(names, out_dir, profile, docs))

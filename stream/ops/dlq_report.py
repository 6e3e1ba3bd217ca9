"""What ``chatstream dlq`` prints: an inspection as text or JSON-ready data, and a replay report.
Pure functions of the results in ``stream.ops.dlq``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from stream.ops.dlq import Inspection, ReplayReport
from stream.ops.dlq_records import DeadLetter, describe


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common()) or "-"


def _letter_line(letter: DeadLetter, replayed: bool) -> list[str]:
    data = describe(letter, replayed)
    line = (f"  partition {data['partition']} offset {data['offset']}  {data['timestamp']}  "
            f"stage {data['stage']}  {data['error_type']}  source {data['source'] or '-'}")
    notes = [note for note, shown in (("[replayed]", replayed),
                                      (f"[bytes dropped: {data['value_dropped']}]",
                                       data["value_dropped"] is not None)) if shown]
    lines = [" ".join([line, *notes])]
    if data["message"]:
        lines.append(f"      {data['message']}")
    if data["replayed_from"]:
        lines.append(f"      replayed before from {', '.join(data['replayed_from'])}")
    return lines


def render_inspection(inspection: Inspection) -> str:
    """Totals, counts by stage and by error type, then the latest dead letters, newest first."""
    lines = [f"dead letters in {inspection.topic}: {inspection.total} "
             f"({len(inspection.replayed)} replayed)"]
    if not inspection.complete:
        lines.append("warning: the topic was not read to its end (timed out); counts are partial")
    lines += [f"by stage:      {_counts(inspection.by_stage)}",
              f"by error type: {_counts(inspection.by_error_type)}"]
    if inspection.latest:
        lines.append(f"latest {len(inspection.latest)}:")
        for letter in inspection.latest:
            lines += _letter_line(letter, inspection.was_replayed(letter))
    return "\n".join(lines)


def inspection_data(inspection: Inspection) -> dict[str, Any]:
    """The inspection as JSON-ready data (``--json``)."""
    return {
        "topic": inspection.topic, "total": inspection.total, "complete": inspection.complete,
        "replayed": len(inspection.replayed),
        "by_stage": dict(inspection.by_stage.most_common()),
        "by_error_type": dict(inspection.by_error_type.most_common()),
        "latest": [describe(letter, inspection.was_replayed(letter))
                   for letter in inspection.latest],
    }


def _what(letter: DeadLetter) -> str:
    return f"stage {letter.stage}, {letter.error_type}, source {letter.source or '-'}"


def render_replay(report: ReplayReport) -> str:
    """One line per dead letter replayed (or, in a dry run, that would be), skipped or failed,
    then the totals."""
    lines = []
    for letter, destination in report.replayed:
        if destination is None:
            lines.append(f"would replay {letter.address} ({_what(letter)})")
        else:
            lines.append(f"replayed {letter.address} -> {destination} ({_what(letter)})")
    lines += [f"skipped {letter.address}: {why}" for letter, why in report.skipped]
    lines += [f"failed {letter.address}: {why}" for letter, why in report.failed]
    lines += [f"warning {letter.address}: {why}" for letter, why in report.unmarked]
    verb = "would replay" if report.dry_run else "replayed"
    lines.append(f"{verb} {len(report.replayed)}, skipped {len(report.skipped)}, "
                 f"failed {len(report.failed)}" + (" (dry run: nothing published)"
                                                   if report.dry_run else ""))
    return "\n".join(lines)

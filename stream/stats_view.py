"""``chatstream stats``: fetch /stats from a running member and render it as a table."""

from __future__ import annotations

from typing import Any

import httpx


class StatsUnavailable(RuntimeError):
    pass


def fetch_stats(base_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/stats"
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise StatsUnavailable(f"cannot read {url}: {exc}") from None
    data: dict[str, Any] = response.json()
    return data


def _rows(title: str, values: dict[str, Any]) -> list[str]:
    lines = [title]
    for key, value in values.items():
        is_group = isinstance(value, dict)
        rendered = ", ".join(f"{k}={v}" for k, v in value.items()) if is_group else str(value)
        lines.append(f"  {key:<24} {rendered}")
    return lines


def render_stats(data: dict[str, Any]) -> str:
    """A readable table: one section per top-level group of the stats document."""
    lines = [f"mode: {data.get('mode', '?')}"]
    for section in ("sessions", "performance", "queues", "channels", "cache", "pools", "kafka"):
        if isinstance(data.get(section), dict) and data[section]:
            lines += _rows(section, data[section])
    return "\n".join(lines)

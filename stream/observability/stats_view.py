"""``chatstream stats``: fetch /stats from a running member and render it as a table."""

from __future__ import annotations

from typing import Any

import httpx

from stream.settings import Settings


class StatsUnavailable(RuntimeError):
    pass


def member_url(given: str | None, settings: Settings | None) -> str:
    """The base URL to read: ``given`` (``http://`` added to a bare host:port), else the
    member's own address from the settings; ``StatsUnavailable`` when neither says one."""
    if given:
        return given if "://" in given else f"http://{given}"
    if settings is None or not settings.http_port:  # unset, or 0: each member chose a free one
        raise StatsUnavailable(
            "no --url, and CHATSTREAM_HTTP_PORT names no port: give --url with the address a "
            "member logs at start (\"serving /metrics, /stats ... on http://...\"), or set "
            "CHATSTREAM_HTTP_PORT as the member has it")
    host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
    return f"http://{host}:{settings.http_port}"


def fetch_stats(base_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The /stats document of the member at ``base_url``.

    Raises ``StatsUnavailable`` (one line of text) when the address is not a URL, nothing
    answers, the answer is an HTTP error, or it is not a JSON object."""
    url = base_url.rstrip("/") + "/stats"
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StatsUnavailable(f"cannot read {url}: {reason}") from None
    if not isinstance(data, dict):
        raise StatsUnavailable(f"cannot read {url}: expected a JSON object")
    return data


SECTIONS = ("sessions", "performance", "queues", "channels", "cache", "pools", "processors",
            "kafka")


def _inline(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"


def _rows(title: str, values: dict[str, Any]) -> list[str]:
    lines = [title]
    for key, value in values.items():
        rendered = _inline(value) if isinstance(value, dict) else str(value)
        lines.append(f"  {key:<24} {rendered}")
    return lines


def render_stats(data: dict[str, Any]) -> str:
    """A readable table: one section per top-level group of the stats document."""
    lines = [f"mode: {data.get('mode', '?')}   uptime: {data.get('uptime_s', '?')} s"]
    for section in SECTIONS:
        if isinstance(data.get(section), dict) and data[section]:
            lines += _rows(section, data[section])
    return "\n".join(lines)

"""The ``chatstream`` command line. Each command is a thin shell over a module that does the work."""

from __future__ import annotations

import asyncio
import signal
import sys
from enum import StrEnum
from typing import Annotated

import orjson
import typer

from stream.settings import Settings, SettingsError, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kafka stream processor for chat bots.")
topics_app = typer.Typer(no_args_is_help=True, help="Topic set-up.")
app.add_typer(topics_app, name="topics")


class PriorityChoice(StrEnum):
    critical = "critical"
    high = "high"
    normal = "normal"
    low = "low"


class MessageTypeChoice(StrEnum):
    message = "message"
    mention = "mention"
    dm = "dm"
    system = "system"


def _settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def run() -> None:
    """Run the main job: a consumer-group member answering chat events until SIGINT/SIGTERM."""
    from stream.app.service import run_service

    asyncio.run(run_service(_settings()))


@app.command()
def send(
    text: Annotated[str, typer.Argument(help="the message content")],
    bot: Annotated[str, typer.Option("--bot", help="bot id")] = "cli-bot",
    channel: Annotated[str, typer.Option("--channel", help="channel id")] = "cli-channel",
    user: Annotated[str, typer.Option("--user", help="user id")] = "cli-user",
    priority: Annotated[PriorityChoice | None, typer.Option(help="explicit priority")] = None,
    message_type: Annotated[MessageTypeChoice, typer.Option("--type")] = MessageTypeChoice.message,
    wait: Annotated[bool, typer.Option("--wait", help="wait for and print the response")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 30.0,
) -> None:
    """Publish one chat event as a bot would."""
    from stream.botkit.send import send_one

    response = asyncio.run(send_one(
        _settings(), bot=bot, channel=channel, user=user, text=text,
        priority=priority.value if priority else None, message_type=message_type.value,
        wait=wait, timeout_s=timeout,
    ))
    if response is not None:
        typer.echo(orjson.dumps(response, option=orjson.OPT_INDENT_2).decode())


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="seconds of simulated traffic")] = 20.0,
    rate: Annotated[float, typer.Option(help="events per second from all bots together")] = 50.0,
    channels: Annotated[int, typer.Option(help="simulated channels")] = 36,
    invalid_every: Annotated[int, typer.Option(help="one malformed record per N events")] = 100,
) -> None:
    """Embedded broker + topics + chatstream + simulated bots, then a summary."""
    from stream.devtools.demo import run_demo

    summary = asyncio.run(run_demo(_settings(), duration_s=duration, rate=rate,
                                   channels=channels, invalid_every=invalid_every))
    raise typer.Exit(0 if summary.all_answered else 1)


@app.command()
def broker(port: Annotated[int, typer.Option(help="loopback port (0: any free)")] = 9092) -> None:
    """Run the embedded broker in the foreground and print its bootstrap address."""
    from infra.broker import EmbeddedBroker

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop the broker child on SIGTERM too
    with EmbeddedBroker(port=port) as embedded:
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap_servers}")
        typer.echo("memory-only broker running; Ctrl-C stops it (and loses its data)")
        try:
            while embedded.alive():
                embedded.wait(1.0)
        except KeyboardInterrupt:
            pass


@topics_app.command("ensure")
def topics_ensure() -> None:
    """Create the inbound, response and dead-letter topics if they are missing."""
    from stream.kafka.topics import ensure_topics, topic_names

    settings = _settings()
    created = asyncio.run(ensure_topics(settings))
    for name in topic_names(settings):
        state = "created" if name in created else "exists"
        typer.echo(f"{name}: {state} ({settings.partitions} partitions when created)")


@app.command()
def schema() -> None:
    """Print the JSON Schemas of ChatEvent and ResponseEvent."""
    from schemas.events import ChatEvent, ResponseEvent

    schemas = {"ChatEvent": ChatEvent.model_json_schema(),
               "ResponseEvent": ResponseEvent.model_json_schema()}
    typer.echo(orjson.dumps(schemas, option=orjson.OPT_INDENT_2).decode())


@app.command()
def stats(
    url: Annotated[str, typer.Option(help="base URL of a running chatstream")] =
        "http://127.0.0.1:8080",
    as_json: Annotated[bool, typer.Option("--json", help="raw JSON")] = False,
) -> None:
    """Print a running processor's performance stats."""
    from stream.observability.stats_view import StatsUnavailable, fetch_stats, render_stats

    try:
        data = fetch_stats(url)
    except StatsUnavailable as exc:
        typer.echo(f"chatstream stats: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json
               else render_stats(data))


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="events per scenario")] = 2000,
    latency_ms: Annotated[float, typer.Option(help="simulated I/O latency per event")] = 20.0,
) -> None:
    """Concurrent manager vs basic path on the embedded broker, reported as ratios."""
    from stream.devtools.bench import run_bench

    asyncio.run(run_bench(_settings(), events=events, io_latency_ms=latency_ms))


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        print(f"chatstream: {exc}", file=sys.stderr)
        sys.exit(SettingsError.exit_code)

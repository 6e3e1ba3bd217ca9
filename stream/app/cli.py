"""The ``chatstream`` command line. Each command is a thin shell over a module that does the work."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import orjson
import typer

from stream.settings import Settings, SettingsError, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kafka stream processor for chat bots.")
topics_app = typer.Typer(no_args_is_help=True, help="Topic set-up.")
app.add_typer(topics_app, name="topics")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: inspect and replay.")
app.add_typer(dlq_app, name="dlq")
config_app = typer.Typer(no_args_is_help=True, help="Configuration.")
app.add_typer(config_app, name="config")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"chatstream {version('chatstream')}")
        raise typer.Exit


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print chatstream's version and exit")] = False,
) -> None:
    """Kafka stream processor for chat bots."""


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


class StageChoice(StrEnum):
    size = "size"
    json = "json"
    validation = "validation"
    processing = "processing"
    publish = "publish"


# The service name of the spans `chatstream send` exports, unless OTEL_SERVICE_NAME says otherwise.
SEND_SERVICE_NAME = "chatstream-send"


def _settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def run(
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="group members to run (default CHATSTREAM_WORKERS: one per core)",
    )] = None,
) -> None:
    """Run the main job: consumer-group members answering chat events until SIGINT/SIGTERM."""
    settings = _settings(workers=workers)
    if settings.workers > 1:
        from stream.app.supervisor import supervise

        env = dict(os.environ)
        raise typer.Exit(supervise(settings.workers, env))
    from stream.app.service import run_member
    from stream.kafka.config import ClientStartFailed

    try:
        run_member(settings)
    except ClientStartFailed as failed:  # a supervisor restarts it, after a backoff
        _fail("run", str(failed))


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
    from aiokafka.errors import KafkaError

    from infra.telemetry import TelemetryConfigError, configure_tracing
    from schemas.codec import DecodeError
    from stream.botkit.replies import DeadLettered
    from stream.botkit.send import send_one
    from stream.kafka.config import broker_failure

    settings = _settings()
    _quiet_client_logs()
    try:  # the bot's publish opens the event's trace (a producer span) when OTEL asks for one
        provider = configure_tracing(default_service_name=SEND_SERVICE_NAME)
    except TelemetryConfigError as exc:
        _fail("send", str(exc), code=2)
    try:
        response = asyncio.run(send_one(
            settings, bot=bot, channel=channel, user=user, text=text,
            priority=priority.value if priority else None, message_type=message_type.value,
            wait=wait, timeout_s=timeout,
        ))
    except DecodeError as refused:
        _fail("send", f"not published, chatstream would dead-letter it: {refused}", code=2)
    except DeadLettered as dead:
        _fail("send", str(dead))
    except TimeoutError:
        _fail("send", f"published, but no response within {timeout:g} s: is `chatstream run` "
                      "running on these brokers and topics?")
    except (KafkaError, OSError) as exc:
        _fail("send", broker_failure(settings, exc))
    finally:
        if provider is not None:
            provider.shutdown()  # exports the spans before the process ends
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
    from infra.broker import BrokerError, EmbeddedBroker

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop the broker child on SIGTERM too
    embedded = EmbeddedBroker(port=port)
    try:
        embedded.start()
    except BrokerError as exc:
        _fail("broker", str(exc))
    with embedded:
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap_servers}")
        typer.echo("memory-only broker running; Ctrl-C stops it (and loses its data)")
        try:
            while embedded.alive():
                embedded.wait(1.0)
        except KeyboardInterrupt:
            pass
        else:  # it ended on its own, not on our stop: say why
            _fail("broker", f"the broker exited: {embedded.log_tail()}")


@topics_app.command("ensure")
def topics_ensure() -> None:
    """Create the inbound, response, dead-letter and changelog topics if they are missing."""
    from aiokafka.errors import KafkaError

    from infra.topics import TopicCreationRefused
    from stream.kafka.config import ClientStartFailed, broker_failure
    from stream.kafka.topics import ensure_topics

    settings = _settings()
    _quiet_client_logs()
    try:
        ensured = asyncio.run(ensure_topics(settings))
    except (TopicCreationRefused, ClientStartFailed) as refused:
        _fail("topics ensure", str(refused))
    except (KafkaError, OSError) as exc:
        _fail("topics ensure", broker_failure(settings, exc))
    for topic in ensured:
        count = "?" if topic.partitions is None else topic.partitions
        typer.echo(f"{topic.name}: {'created' if topic.created else 'exists'} "
                   f"({count} partitions)")


@app.command()
def schema() -> None:
    """Print the JSON Schemas of ChatEvent (with the configured input limits) and
    ResponseEvent."""
    from schemas.events import ResponseEvent, chat_event_schema

    schemas = {"ChatEvent": chat_event_schema(_settings().input_limits),
               "ResponseEvent": ResponseEvent.model_json_schema()}
    typer.echo(orjson.dumps(schemas, option=orjson.OPT_INDENT_2).decode())


@app.command()
def stats(
    url: Annotated[str | None, typer.Option(
        help="base URL of a running member (host:port is enough); default: "
        "CHATSTREAM_HTTP_HOST and CHATSTREAM_HTTP_PORT")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="raw JSON")] = False,
) -> None:
    """Print a running processor's performance stats."""
    from stream.observability.stats_view import (
        StatsUnavailable,
        fetch_stats,
        member_url,
        render_stats,
    )

    try:
        data = fetch_stats(member_url(url, None if url else _settings()))
    except StatsUnavailable as exc:
        typer.echo(f"chatstream stats: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json
               else render_stats(data))


@app.command()
def bench(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="scenarios: all, passthrough, io-bound, latency, priority, cache, scale, full, "
        "engine")
    ] = None,
    out: Annotated[Path, typer.Option(help="results folder")] = Path("bench-results"),
    profile: Annotated[bool, typer.Option(
        help="record py-spy profiles of the members (raw format) into the results folder")
    ] = False,
    docs: Annotated[Path | None, typer.Option(
        help="also write the table and chart there (e.g. docs/benchmarks.md)")] = None,
) -> None:
    """Benchmarks on fresh embedded brokers, each against a reference in the same run."""
    from stream.devtools.bench import SCENARIOS
    from stream.devtools.bench import main as run_bench

    names = scenarios or ["all"]
    unknown = sorted(set(names) - {"all", *SCENARIOS})
    if unknown:
        typer.echo(f"chatstream bench: unknown scenarios {unknown}; known: all, "
                   f"{', '.join(SCENARIOS)}", err=True)
        raise typer.Exit(2)
    run_bench(names, out, profile, docs)


@dlq_app.command("inspect")
def dlq_inspect(
    limit: Annotated[int, typer.Option(min=0, help="latest dead letters to show")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
    idle_timeout: Annotated[float, typer.Option(min=0.1, help="seconds without a record "
                                                "before giving up")] = 5.0,
    timeout: Annotated[float, typer.Option(min=1, help="longest read, in seconds")] = 120.0,
) -> None:
    """Count the dead letters by stage and error type; show the latest with their reasons."""
    from stream.ops.dlq import DeadLetterToolError, inspect
    from stream.ops.dlq_report import inspection_data, render_inspection

    _quiet_client_logs()
    try:
        found = asyncio.run(inspect(_settings(), limit=limit, idle_timeout_s=idle_timeout,
                                    deadline_s=timeout))
    except DeadLetterToolError as exc:
        typer.echo(f"chatstream dlq inspect: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(inspection_data(found), option=orjson.OPT_INDENT_2).decode()
               if as_json else render_inspection(found))


@dlq_app.command("replay")
def dlq_replay(
    stage: Annotated[StageChoice | None, typer.Option(help="only this stage")] = None,
    error_type: Annotated[str | None, typer.Option(help="only this error type (any case)")
                          ] = None,
    since: Annotated[str | None, typer.Option(help="only dead-lettered at or after this "
                                              "ISO 8601 time (read as UTC when it has no "
                                              "offset)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print, publish nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="replay already replayed ones too")
                     ] = False,
    idle_timeout: Annotated[float, typer.Option(min=0.1, help="seconds without a record "
                                                "before giving up")] = 5.0,
    timeout: Annotated[float, typer.Option(min=1, help="longest read, and longest wait for "
                                           "acks, in seconds")] = 120.0,
) -> None:
    """Re-publish matching dead letters' original records to the inbound topic, once each."""
    from stream.ops.dlq import DeadLetterToolError, Selection, parse_since, replay
    from stream.ops.dlq_report import render_replay

    try:
        since_ms = parse_since(since) if since is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    selection = Selection(stage.value if stage else None, error_type, since_ms)
    _quiet_client_logs()
    try:
        report = asyncio.run(replay(_settings(), selection, dry_run=dry_run, force=force,
                                    idle_timeout_s=idle_timeout, deadline_s=timeout))
    except DeadLetterToolError as exc:
        typer.echo(f"chatstream dlq replay: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render_replay(report))
    raise typer.Exit(0 if report.ok else 1)


@config_app.command("reference")
def config_reference(
    check: Annotated[Path | None, typer.Option(help="fail if this file's generated table "
                                               "differs from the settings")] = None,
    write: Annotated[Path | None, typer.Option(help="rewrite this file's generated table")
                     ] = None,
) -> None:
    """Print the configuration reference (a Markdown table), or check or update a file's copy."""
    from stream.ops.config_reference import ReferenceMismatch, check_file, render, write_file

    try:
        if check is not None:
            check_file(check)
            typer.echo(f"{check}: configuration reference is up to date")
        elif write is not None:
            changed = write_file(write)
            typer.echo(f"{write}: {'updated' if changed else 'already up to date'}")
        else:
            typer.echo(render())
    except ReferenceMismatch as exc:
        _fail("config reference", str(exc))
    except OSError as exc:  # a file that is not there, or cannot be read or written
        _fail("config reference", f"{exc.filename}: {exc.strerror}")


def _fail(command: str, reason: str, code: int = 1) -> NoReturn:
    typer.echo(f"chatstream {command}: {reason}", err=True)
    raise typer.Exit(code)


def _quiet_client_logs() -> None:
    """A one-shot command says itself why the brokers failed it, once, in one line."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        print(f"chatstream: {exc}", file=sys.stderr)
        sys.exit(SettingsError.exit_code)

"""Real ``chatstream run`` processes on a real broker, and what failure tests need around them.

``WorkerPool`` starts members of one consumer group as subprocesses (logs to files, /readyz and
/stats over loopback HTTP), stops them with SIGTERM or SIGKILL and kills leftovers at the end.
``produce`` publishes events (paced or as fast as possible) and remembers where each landed;
``OutputReader`` reads the response and dead-letter topics from the beginning; ``settle`` waits
until the group committed everything and the reader has read everything written before that,
so counting duplicates needs no sleep; ``analyse`` turns it all into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition

from infra.broker import free_loopback_port
from stream.botkit.client import BotClient
from stream.kafka.member import SHUTDOWN_GRACE_S
from stream.kafka.topics import ensure_topics
from stream.settings import Settings, load_settings, placement_environment

RELIABILITY_DIR = Path(__file__).resolve().parent
PROJECT_DIR = RELIABILITY_DIR.parents[1]
CHATSTREAM = Path(sys.executable).parent / "chatstream"
FENCE_HEADER = "chatstream.test.fence"
# The most a stopped worker may take beyond its shutdown timeout: the member's bounded closing
# steps, then the interpreter, the pools and tracing closing on a loaded machine. A stop that
# waited on an absent broker instead would take a client's request timeout (40 s).
STOP_MARGIN_S = SHUTDOWN_GRACE_S + 3.0

# Group timings for tests (BROKER.md): failover after a SIGKILL takes ~5 s with 3 s sessions.
BASE_ENV = {
    "CHATSTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "CHATSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "600",
    "CHATSTREAM_COMMIT_INTERVAL_MS": "100",
    "CHATSTREAM_WORKERS": "1",  # each worker here is one member: the tests kill and count them
    "MAX_WORKER_PROCESSES": "1",
    "MAX_WORKER_THREADS": "4",
    "CHATSTREAM_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}
_INHERITED_PREFIXES_DROPPED = ("CHATSTREAM_", "KAFKA_", "OTEL_", "MAX_", "ENABLE_", "SESSION_",
                               "CONTEXT_CACHE_")


def make_settings(bootstrap_servers: str, **overrides: object) -> Settings:
    """Settings with a group and topics unique to one test (the test side's view of them)."""
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "kafka_bootstrap_servers": bootstrap_servers,
        "group_id": f"reliability-{suffix}",
        "inbound_topic": f"in-{suffix}",
        "response_topic": f"out-{suffix}",
        "dlq_topic": f"dlq-{suffix}",
        "changelog_topic": f"sessions-{suffix}",
        "partitions": 8,
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 600,
        "commit_interval_ms": 100,
    }
    values.update(overrides)
    return load_settings(**values)


def rate_capped(step_ms: int, in_flight: int) -> dict[str, str]:
    """A worker's environment that caps it at ``in_flight * 1000 / step_ms`` events per second
    on any machine: each event waits ``step_ms`` in a step that stands for a remote call
    (``io_step``), at most ``in_flight`` of them at once. For tests that need work left at a
    given moment whatever the machine's speed."""
    return {"CHATSTREAM_PROCESSOR_PLUGINS": "stream.devtools.bench.steps:io_step",
            "CHATSTREAM_BENCH_IO_MS": str(step_ms), "CHATSTREAM_MAX_IN_FLIGHT": str(in_flight)}


def worker_env(settings: Settings, http_port: int, extra: dict[str, str]) -> dict[str, str]:
    """The environment of one worker: ours, not whatever the test runner happens to carry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES_DROPPED)}
    env.update(BASE_ENV)
    env.update(placement_environment(settings))
    env.update({
        "CHATSTREAM_HTTP_HOST": "127.0.0.1",
        "CHATSTREAM_HTTP_PORT": str(http_port),
    })
    env.update(extra)
    return env


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float,
                what: str, interval_s: float = 0.05) -> float:
    """Poll ``condition`` until it holds; return the seconds it took. AssertionError on timeout."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(interval_s)


# -- worker processes ------------------------------------------------------------------------


class Worker:
    """One ``chatstream run`` subprocess."""

    def __init__(self, name: str, settings: Settings, log_path: Path,
                 extra_env: dict[str, str]) -> None:
        self.name = name
        self.settings = settings
        self.log_path = log_path
        self.http_port = free_loopback_port()
        self.env = worker_env(settings, self.http_port, extra_env)
        self.process: subprocess.Popen[bytes] | None = None
        self._children: dict[int, psutil.Process] = {}
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.http_port}",
                                       timeout=1.0)

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(CHATSTREAM), "run"], cwd=PROJECT_DIR, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl-C is for pytest, not for workers
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def ready(self) -> bool | None:
        """/readyz: True (200), False (503), None when the endpoint does not answer."""
        try:
            response = await self._http.get("/readyz")
        except httpx.HTTPError:
            return None
        return response.status_code == 200

    async def stats(self) -> dict[str, Any] | None:
        try:
            response = await self._http.get("/stats")
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def wait_ready(self, timeout_s: float = 40.0) -> float:
        """Wait for /readyz to say ready (partitions assigned); return the seconds it took."""
        async def check() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.returncode}:\n"
                                     f"{self.log_tail()}")
            return bool(await self.ready())

        return await until(check, timeout_s, f"{self.name} to become ready\n{self.log_tail()}",
                           interval_s=0.1)

    def _remember_children(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._children[child.pid] = child

    def rss_bytes(self) -> int:
        """Resident memory of the worker and its pool processes."""
        try:
            process = psutil.Process(self.pid)
            family = [process, *process.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for member in family:
            with contextlib.suppress(psutil.Error):
                total += member.memory_info().rss
        return total

    async def wait_exit(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the process to exit; its return code, or None."""
        with contextlib.suppress(AssertionError):
            await until(lambda: not self.alive(), timeout_s, f"{self.name} to exit")
        return self.returncode

    async def terminate(self, timeout_s: float) -> tuple[int | None, float]:
        """SIGTERM; (return code or None if still running after ``timeout_s``, seconds taken)."""
        self._remember_children()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        code = await self.wait_exit(timeout_s)
        return code, time.monotonic() - started

    async def kill(self) -> float:
        """SIGKILL and reap; return the wall-clock time at which the process was surely dead."""
        self._remember_children()
        self.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        await until(lambda: not self.alive(), 10, f"{self.name} to die")
        self._reap_children()
        return time.time()

    def _reap_children(self) -> None:
        """Kill pool processes a SIGKILLed worker may leave behind (by pid, ones we saw)."""
        for child in self._children.values():
            with contextlib.suppress(psutil.Error):
                child.kill()  # checks it is still the same process; SIGKILL needs no waiting
        self._children.clear()

    async def close(self) -> None:
        if self.alive():
            self._remember_children()
            self.process.kill()  # type: ignore[union-attr]
            self.process.wait(timeout=10)  # type: ignore[union-attr]
        self._reap_children()
        await self._http.aclose()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} ({self.log_path}) ---\n{tail}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class WorkerPool:
    """Workers of one test: all share the test's settings; leftovers are killed on close."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def spawn(self, name: str, **extra_env: str) -> Worker:
        log_path = self.log_dir / f"{name}-{len(self.workers)}.log"
        worker = Worker(name, self.settings, log_path, dict(extra_env)).start()
        self.workers.append(worker)
        return worker

    def logs(self, lines: int = 25) -> str:
        return "\n".join(worker.log_tail(lines) for worker in self.workers)

    async def close(self) -> None:
        for worker in self.workers:
            await worker.close()


# -- producing -------------------------------------------------------------------------------


@dataclass
class SendLog:
    """What was published: events in send order and where each landed."""

    events: list[dict[str, Any]] = field(default_factory=list)
    where: dict[str, tuple[int, int]] = field(default_factory=dict)  # event_id -> (partition, offset)
    raw: list[tuple[int, int]] = field(default_factory=list)  # records that are not events
    sent_at: dict[str, float] = field(default_factory=dict)

    def ends(self) -> dict[int, int]:
        """Per partition, the offset after the last record sent (what the group must commit)."""
        ends: dict[int, int] = {}
        for partition, offset in [*self.where.values(), *self.raw]:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends


async def produce(settings: Settings, events: Iterable[dict[str, Any]], *,
                  rate: float | None = None, log: SendLog | None = None,
                  on_progress: Callable[[int], Awaitable[None]] | None = None) -> SendLog:
    """Publish ``events`` at ``rate`` per second (None: as fast as the client goes).

    ``on_progress(n)`` is awaited after every 50th event, so a test can act mid-stream.
    """
    log = log or SendLog()
    pending: list[tuple[str, asyncio.Future[Any]]] = []
    started = time.monotonic()
    async with BotClient(settings, client_id="reliability-producer") as client:
        for i, event in enumerate(events):
            if rate is not None and (delay := started + i / rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            log.events.append(event)
            log.sent_at[event["event_id"]] = time.time()
            pending.append((event["event_id"], await client.publish(event)))
            if on_progress is not None and (i + 1) % 50 == 0:
                await on_progress(i + 1)
        for event_id, ack in pending:
            metadata = await ack
            log.where[event_id] = (metadata.partition, metadata.offset)
    return log


async def produce_raw(settings: Settings, records: Iterable[tuple[bytes | None, bytes | None]],
                      log: SendLog) -> list[tuple[int, int]]:
    """Publish raw (key, value) records; return and remember where each landed."""
    async with BotClient(settings, client_id="reliability-raw") as client:
        acks = [await client.publish_raw(value, key=key) for key, value in records]
        placed = [(m.partition, m.offset) for m in [await ack for ack in acks]]
    log.raw.extend(placed)
    return placed


# -- reading the outputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    partition: int
    offset: int
    timestamp_ms: int
    response: dict[str, Any]


class OutputReader:
    """Reads the response and dead-letter topics from the beginning, in the background."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, client_id="reliability-reader",
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        self.answers: list[Answer] = []
        self.dead_letters: list[ConsumerRecord[bytes, bytes]] = []
        self.fences: set[tuple[str, int, str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OutputReader:
        await self._consumer.start()
        topics = (self._settings.response_topic, self._settings.dlq_topic)
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topics {topics} do not exist"
        self._consumer.assign(partitions)
        self._task = asyncio.create_task(self._read_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read_forever(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    self._take(tp, record)

    def _take(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        headers = dict(record.headers or ())
        if FENCE_HEADER in headers:
            self.fences.add((tp.topic, tp.partition, headers[FENCE_HEADER].decode()))
        elif tp.topic == self._settings.dlq_topic:
            self.dead_letters.append(record)
        else:
            self.answers.append(Answer(tp.partition, record.offset, record.timestamp,
                                       orjson.loads(record.value)))

    def answered_ids(self) -> set[str]:
        return {answer.response["in_reply_to"] for answer in self.answers}

    async def fence(self) -> None:
        """Write a marker to every output partition and wait until all were read back.

        Everything the broker stored in those partitions before the call has then been read.
        """
        token = uuid.uuid4().hex
        producer = AIOKafkaProducer(bootstrap_servers=self._settings.kafka_bootstrap_servers,
                                    client_id="reliability-fence")
        await producer.start()
        try:
            wanted = set()
            for tp in self._consumer.assignment():
                await producer.send_and_wait(tp.topic, b"fence", partition=tp.partition,
                                             headers=[(FENCE_HEADER, token.encode())])
                wanted.add((tp.topic, tp.partition, token))
        finally:
            await producer.stop()
        await until(lambda: wanted <= self.fences, 30, "the reader to see every fence")


async def committed_offsets(settings: Settings) -> dict[int, int]:
    """The group's committed offset of every inbound partition (-1: none yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                                client_id="reliability-admin")
    await admin.start()
    try:
        partitions = [TopicPartition(settings.inbound_topic, p) for p in range(settings.partitions)]
        offsets = await admin.list_consumer_group_offsets(settings.group_id, partitions=partitions)
        return {tp.partition: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def settle(settings: Settings, reader: OutputReader, sent: SendLog,
                 timeout_s: float = 60.0) -> None:
    """Wait until the group committed every record sent, then until the reader read every output.

    A commit follows the acknowledgement of the responses (and duplicates) of its records, so
    after the fence nothing more can show up unless a worker re-processes committed records.
    """
    ends = sent.ends()
    last: dict[int, int] = {}

    async def all_committed() -> bool:
        nonlocal last
        last = await committed_offsets(settings)
        return all(last.get(p, -1) >= end for p, end in ends.items())

    try:
        await until(all_committed, timeout_s, "the group to commit every record",
                    interval_s=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: committed {last}, ends {ends}, "
                             f"answered {len(reader.answered_ids())}/{len(sent.events)}") from None
    await reader.fence()


async def create_topics(settings: Settings) -> None:
    await ensure_topics(settings)


# -- figures ---------------------------------------------------------------------------------


def session_of(event: dict[str, Any]) -> tuple[str, str, str]:
    return (event["bot_id"], event["channel_id"], event["user_id"])


@dataclass
class Figures:
    events: int
    answered: int
    lost: list[str]
    duplicates: int
    duplicated_ids: list[str]
    mismatched_response_ids: list[str]
    unexpected: list[str]
    order_violations: int
    first_answer: dict[str, Answer]

    def line(self) -> str:
        return (f"events {self.events}, answered {self.answered}, lost {len(self.lost)}, "
                f"duplicates {self.duplicates} (of {len(self.duplicated_ids)} events), "
                f"order violations {self.order_violations}")


def analyse(sent: SendLog, reader: OutputReader) -> Figures:
    """Lost, duplicated and out-of-order answers, judged from the response topic's order.

    Responses are keyed by channel, so one session's answers share a partition and the reader
    sees them in the order the broker stored them, whichever worker wrote them.
    """
    first: dict[str, Answer] = {}
    copies: dict[str, list[Answer]] = defaultdict(list)
    for answer in reader.answers:
        event_id = answer.response["in_reply_to"]
        copies[event_id].append(answer)
        first.setdefault(event_id, answer)
    sent_ids = [event["event_id"] for event in sent.events]
    known = set(sent_ids)
    duplicated = [eid for eid, answers in copies.items() if len(answers) > 1]
    mismatched = [eid for eid in duplicated
                  if len({a.response["response_id"] for a in copies[eid]}) > 1]
    violations = 0
    sessions: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for event in sent.events:
        sessions[session_of(event)].append(event["event_id"])
    for ids in sessions.values():
        positions = [(first[eid].partition, first[eid].offset) for eid in ids if eid in first]
        violations += sum(1 for a, b in itertools.pairwise(positions) if b < a)
    return Figures(
        events=len(sent_ids),
        answered=len(known & set(first)),
        lost=[eid for eid in sent_ids if eid not in first],
        duplicates=sum(len(copies[eid]) - 1 for eid in duplicated),
        duplicated_ids=duplicated,
        mismatched_response_ids=mismatched,
        unexpected=[eid for eid in first if eid not in known],
        order_violations=violations,
        first_answer=first,
    )

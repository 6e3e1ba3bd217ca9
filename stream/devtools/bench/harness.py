"""What every benchmark scenario stands on: a fresh embedded broker, a preloaded backlog,
members run as separate processes, and figures read back from the response topic.

Rules, in the order they apply:
1. Each scenario gets its own broker (Tansu never frees memory) and its own topics and group.
2. Members run as child processes (``chatstream run`` or the reference loop), so the bench
   process that loads and reads does not share an event loop with what it measures; their CPU
   time and peak RSS come from ``getrusage(RUSAGE_CHILDREN)``.
3. A run is over when every record's response is on the response topic, or at its deadline
   (every wait is bounded); the member is then stopped with SIGTERM. Meanwhile the bench
   watches only the topic's high watermarks; the responses are read back once it is over.
4. The steady rate is responses / (last - first response timestamp): the group join and the
   start-up are not in it. Timestamps are the producer's create times, set at send.
5. CPU is reported twice: for the whole run (rusage of the reaped children: imports, joining,
   restoring and stopping included) and steady (``SteadyCpu``: the members' process trees read
   when the first responses and the last ones are seen), which is what an event costs once
   the member runs. The broker's steady CPU is read the same way: it shares the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from stream.kafka.topics import ensure_topics
from stream.settings import Settings, load_settings, placement_environment, variable_names

__all__ = ["WATCH_INTERVAL_S", "CpuTimeline", "Members", "ResponseReader", "Responses", "Run",
           "SteadyCpu", "bench_settings", "clean_env", "member_env", "offer", "preload",
           "process_cpu_seconds", "read_responses", "reference_command", "relay_command",
           "run_children", "without_collections"]

_REFERENCE = [sys.executable, "-m", "stream.devtools.bench.reference"]
_RELAY = [*_REFERENCE, "relay"]
# How often a drain's watcher reads the response topic's watermarks (``_wait_for_responses``).
WATCH_INTERVAL_S = 0.1


def bench_settings(bootstrap: str, partitions: int = 8, **overrides: Any) -> Settings:
    """Settings with topics and a group of their own on ``bootstrap``."""
    suffix = uuid.uuid4().hex[:8]
    return load_settings(
        kafka_bootstrap_servers=bootstrap, group_id=f"bench-{suffix}",
        inbound_topic=f"bench-in-{suffix}", response_topic=f"bench-out-{suffix}",
        dlq_topic=f"bench-dlq-{suffix}", changelog_topic=f"bench-sessions-{suffix}",
        partitions=partitions, **overrides)


def clean_env() -> dict[str, str]:
    """This process's environment without chatstream's, Kafka's or OpenTelemetry's settings
    (those without a prefix too, such as ``MAX_CONCURRENT_SESSIONS``, in any case): what a
    child the bench measures starts from, whatever the shell that ran it set."""
    read = {name.upper() for name in variable_names()}
    return {key: value for key, value in os.environ.items()
            if not key.upper().startswith(("CHATSTREAM_", "KAFKA_", "OTEL_"))
            and key.upper() not in read}


def member_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a member process for ``settings`` (short group timeouts: a bench
    should not wait out Kafka's production defaults to join)."""
    env = clean_env()
    env.update(placement_environment(settings))
    env.update({
        "CHATSTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "CHATSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "600",
        "CHATSTREAM_LOG_LEVEL": "WARNING",
        "CHATSTREAM_WORKERS": "1",
    })
    env.update(extra or {})
    return env


async def preload(settings: Settings, events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Publish ``events`` (keyed by channel) and wait for every ack; their ids in send order."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    ids: list[str] = []
    try:
        pending = []
        for event in events:
            ids.append(str(event["event_id"]))
            pending.append(await producer.send(settings.inbound_topic, orjson.dumps(event),
                                               key=str(event["channel_id"]).encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ids


@contextlib.contextmanager
def without_collections() -> Iterator[None]:
    """No garbage collection in the bench process meanwhile: it sends the load and notes when
    each response arrives, so a pause of its own would count as the members' latency (full
    collections of the bench's own data took up to 80 ms during a 10 s latency run). What
    exists already is frozen out of later collections too; garbage made meanwhile waits."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


@dataclass
class Responses:
    """The response topic as read back: each response and its create time (ms)."""

    values: list[dict[str, Any]] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)

    def steady_rate(self) -> float:
        """Responses per second between the first and the last one."""
        if len(self.timestamps_ms) < 2:
            return 0.0
        span_s = (max(self.timestamps_ms) - min(self.timestamps_ms)) / 1000
        return (len(self.timestamps_ms) - 1) / span_s if span_s > 0 else float("inf")

    def order_violations(self, sent: Mapping[str, tuple[str, int]]) -> int:
        """Responses that came before a response to an earlier event of the same session.

        ``sent`` maps an event id to (session, its position among the session's events)."""
        last: dict[str, int] = {}
        violations = 0
        for value in self.values:
            session, position = sent.get(value.get("in_reply_to", ""), ("", -1))
            if position < last.get(session, -1):
                violations += 1
            last[session] = max(position, last.get(session, -1))
        return violations


async def read_responses(settings: Settings, expected: int, timeout_s: float) -> Responses:
    """Read the response topic from the start until ``expected`` responses or the deadline."""
    consumer = AIOKafkaConsumer(settings.response_topic,
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=100, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    found = Responses()
    deadline = time.monotonic() + timeout_s
    try:
        while len(found.values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    found.values.append(orjson.loads(record.value))
                    found.timestamps_ms.append(record.timestamp)
    finally:
        await consumer.stop()
    return found


@dataclass
class SteadyCpu:
    """The members' CPU seconds (``read``) noted with the count of responses written, from the
    first count above zero to the latest: the cost of the events answered in between."""

    read: Callable[[], float]
    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None

    def note(self, written: int) -> None:
        if written <= 0:
            return
        sample = (written, self.read())
        if self.first is None:
            self.first = sample
        self.last = sample

    def us_per_event(self) -> float | None:
        """CPU microseconds per response between the first note and the last; None when
        fewer than two notes counted different totals."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return None
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0]) * 1e6


@dataclass
class CpuTimeline:
    """A process's CPU seconds (``read``) sampled every ``interval_s`` while ``run`` runs, each
    with the wall-clock time it was read (the clock of the bench's send times)."""

    read: Callable[[], float]
    interval_s: float = 0.25
    samples: list[tuple[float, float]] = field(default_factory=list)

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.samples.append((time.time(), self.read()))
            await asyncio.sleep(self.interval_s)

    def cores(self, start: float, end: float) -> float | None:
        """Cores used on average between the first sample at or after ``start`` and the last at
        or before ``end``; None when fewer than two samples fall in between."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (began, cpu_began), (ended, cpu_ended) = inside[0], inside[-1]
        return round((cpu_ended - cpu_began) / (ended - began), 2)


@dataclass
class Run:
    """What one set of member processes cost: CPU seconds, and the peak of their summed RSS
    (MiB, members and their pool workers, sampled every 0.25 s); for a drain, the steady CPU
    of the members and of the broker (``SteadyCpu``)."""

    cpu_s: float
    peak_rss_mib: float
    exit_codes: list[int]
    steady: SteadyCpu | None = None
    broker_steady: SteadyCpu | None = None


class Members:
    """Member processes started together and stopped together (SIGTERM, then reaped)."""

    def __init__(self, commands: list[list[str]], env: Mapping[str, str]) -> None:
        self._before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children = [subprocess.Popen(command, env=dict(env), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL) for command in commands]
        self.peak_rss_mib = 0.0
        self._sampler = asyncio.get_running_loop().create_task(self._sample_rss())

    async def _sample_rss(self) -> None:
        # RUSAGE_CHILDREN's peak is the largest child ever waited for (the broker included), so
        # the members' own peak is sampled: their processes and their pool workers, summed.
        while True:
            total = 0
            for process in _process_trees(child.pid for child in self.children):
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_rss_mib = max(self.peak_rss_mib, total / 2**20)
            await asyncio.sleep(0.25)

    def died(self) -> bool:
        return any(child.poll() is not None for child in self.children)

    def cpu_seconds(self) -> float:
        """CPU seconds of the running members and their descendants (pool workers; a
        supervisor's members)."""
        return process_cpu_seconds(child.pid for child in self.children)

    async def stop(self) -> Run:
        self._sampler.cancel()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(_reap, child) for child in self.children]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - self._before.ru_utime) + (after.ru_stime - self._before.ru_stime)
        return Run(cpu, self.peak_rss_mib, codes)


def process_cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU seconds of the running processes ``pids`` and their descendants;
    processes already gone are not counted."""
    total = 0.0
    for process in _process_trees(pids):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _process_trees(pids: Iterable[int]) -> Iterator[psutil.Process]:
    """The running processes ``pids`` and their descendants (pool workers, a supervisor's
    members); one that is gone is skipped."""
    for pid in pids:
        try:
            root = psutil.Process(pid)
            children = root.children(recursive=True)
        except psutil.Error:
            continue
        yield root
        yield from children


class ResponseReader:
    """Reads the response topic from the start in the background, noting when each response
    arrived (wall clock, for latencies from the bot's send time)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.received_at: dict[str, float] = {}
        self.values: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> ResponseReader:
        self._consumer = AIOKafkaConsumer(
            self._settings.response_topic, bootstrap_servers=self._settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=5)
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            now = time.time()
            for records in batches.values():
                for record in records:
                    value = orjson.loads(record.value)
                    self.values.append(value)
                    self.received_at.setdefault(value["in_reply_to"], now)

    async def wait_for(self, count: int, timeout_s: float, members: Members | None = None
                       ) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.received_at) < count:
            if time.monotonic() > deadline or (members is not None and members.died()):
                return False
            await asyncio.sleep(0.05)
        return True


async def wait_for_group(settings: Settings, members: int, timeout_s: float = 30) -> bool:
    """Wait until the group is stable with ``members`` members (every partition assigned), so
    that no rebalance falls inside a measurement; False on timeout."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            (described,) = await admin.describe_consumer_groups([settings.group_id])
            _, _, state, _, _, joined = described.groups[0]
            if state == "Stable" and len(joined) == members:
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        await admin.close()


async def offer(settings: Settings, events: list[dict[str, Any]], rate: float,
                progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Publish ``events`` at ``rate`` per second (in 10 ms ticks, as a bot fleet would);
    the wall-clock send time of each event id."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=1)
    await producer.start()
    sent_at: dict[str, float] = {}
    try:
        started, done = time.monotonic(), 0
        while done < len(events):
            due = min(len(events), int((time.monotonic() - started) * rate) + 1)
            for event in events[done:due]:
                sent_at[str(event["event_id"])] = time.time()
                await producer.send(settings.inbound_topic, orjson.dumps(event),
                                    key=str(event["channel_id"]).encode())
            if progress is not None and due > done:
                progress(due - done)
            done = due
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at


async def run_children(commands: list[list[str]], env: Mapping[str, str], settings: Settings,
                       expected: int, timeout_s: float,
                       on_started: Callable[[list[int]], None] | None = None,
                       broker_pid: int | None = None) -> tuple[Responses, Run]:
    """Start the processes, wait until ``expected`` responses exist (or the deadline), stop
    them with SIGTERM, and read the responses back; the steady CPU of the members, and of the
    broker when its process is given, in the ``Run``."""
    members = Members(commands, env)
    steady = SteadyCpu(members.cpu_seconds)
    broker_steady = (SteadyCpu(lambda: process_cpu_seconds([broker_pid]))
                     if broker_pid is not None else None)
    if on_started is not None:
        on_started([child.pid for child in members.children])
    try:
        responses = await _wait_for_responses(
            settings, expected, timeout_s, members.children,
            [steady] if broker_steady is None else [steady, broker_steady])
    finally:
        run = await members.stop()
    run.steady, run.broker_steady = steady, broker_steady
    return responses, run


def _reap(child: subprocess.Popen[bytes]) -> int:
    try:
        return child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait(timeout=10)


async def _wait_for_responses(settings: Settings, expected: int, timeout_s: float,
                              children: list[subprocess.Popen[bytes]],
                              steady: Sequence[SteadyCpu] = (),
                              poll_interval_s: float = WATCH_INTERVAL_S) -> Responses:
    """Wait until the response topic holds ``expected`` records, then read them back; each
    count seen is noted in every ``steady``.

    While the members run, only the topic's high watermarks are watched, and at most once
    every ``poll_interval_s``: fetching and decoding every response meanwhile would take CPU
    from the members and the broker on the same cores (about 10 us per response: two thirds
    of a core at the minimal loop's rate), and so would watching without a pause (a fetch and
    a read of each process tree's CPU on every broker round trip: the bench process took
    0.12-0.23 of a core while two members drained, 0.04-0.06 at this pace). Rates come from
    the responses' own timestamps, so the pace does not change them; it only notes the CPU
    and sees the end up to one interval later."""
    deadline = time.monotonic() + timeout_s
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=1024)
    await consumer.start()
    written = 0
    try:
        # The bench made the topic with ``settings.partitions`` (``ensure_topics``).
        partitions = [TopicPartition(settings.response_topic, p)
                      for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while True:  # the watermarks are read at least once, however late the start was
            polled_at = time.monotonic()
            written = await _high_watermarks(consumer, partitions)
            for meter in steady:
                meter.note(min(written, expected))
            if written >= expected or time.monotonic() >= deadline:
                break
            if any(child.poll() is not None for child in children):
                break  # a member died: report what there is
            await asyncio.sleep(max(0.0, min(polled_at + poll_interval_s,
                                             deadline) - time.monotonic()))
    finally:
        await consumer.stop()
    return await read_responses(settings, min(written, expected), timeout_s=60)


async def _high_watermarks(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    """The records in ``partitions``, from the high watermarks of one fetch (the embedded
    broker's ``end_offsets`` lag behind by a batch); each partition is then moved to its
    end, so the next fetch carries at most the records written since."""
    await consumer.getmany(timeout_ms=100, max_records=1)
    total = 0
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is not None:
            total += highwater
            if highwater > await consumer.position(tp):
                consumer.seek(tp, highwater)
    return total


def reference_command() -> list[str]:
    """The minimal sequential aiokafka loop (``reference``, mode ``minimal``)."""
    return list(_REFERENCE)


def relay_command() -> list[str]:
    """The relay that forwards each record at once: two broker hops alone (``reference``,
    mode ``relay``)."""
    return list(_RELAY)


"""The processors' process pool with real worker processes: main-less workers for scripts read from
standard input or without a ``__main__`` guard, replacement after a SIGKILL, calls that fail alone,
and workers that do not outlive their parent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from processors.base import ExecutionKind, Stage
from processors.emotion import EmotionProcessor
from processors.pool import process_pool
from schemas.context import ProcessorContext
from schemas.events import ProcessorStatus
from stream import create_concurrent_conversation_manager

pytestmark = pytest.mark.timeout(180)

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCRIPT_TIMEOUT_S = 120
_ENV_DROPPED = ("CHATSTREAM_", "KAFKA_", "OTEL_", "MAX_", "ENABLE_", "SESSION_", "CONTEXT_CACHE_")

# The API used the way a user's script does: three messages, their emotion status and degraded
# steps printed as one JSON line. A generous step timeout keeps a loaded machine from turning a
# slow worker start into a degraded answer; a broken pool fails every attempt at any timeout.
API_SCRIPT = """
import asyncio, json
from stream import create_concurrent_conversation_manager

async def main():
    manager = await create_concurrent_conversation_manager(
        max_worker_processes=1, processor_timeout_seconds=20, processor_kinds="emotion=process")
    try:
        answers = []
        for text in ("I love this, thank you!", "this is awful", "what time is it?"):
            response = await asyncio.wait_for(manager.process_conversation_message(
                user_id="u1", channel_id="c1", content=text, bot_id="b1"), 60)
            answers.append([response.analysis["emotion"].status.value, response.degraded])
        print("ANSWERS " + json.dumps(answers), flush=True)
    finally:
        await manager.stop()

asyncio.run(main())
"""


def _script_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_ENV_DROPPED)}


def _answers(completed: subprocess.CompletedProcess[str]) -> list[list[Any]]:
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [line for line in completed.stdout.splitlines() if line.startswith("ANSWERS ")]
    assert len(lines) == 1, f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr[-3000:]}"
    return json.loads(lines[0].removeprefix("ANSWERS "))  # type: ignore[no-any-return]


def test_api_run_from_standard_input_answers_emotion_ok(tmp_path):
    """A script read from standard input (``python -``) gets emotion ok on every event."""
    completed = subprocess.run([sys.executable, "-"], input=API_SCRIPT, capture_output=True,
                               text=True, timeout=SCRIPT_TIMEOUT_S, cwd=tmp_path,
                               env=_script_env())
    assert _answers(completed) == [["ok", []]] * 3
    assert "process pool broken" not in completed.stderr


def test_script_without_main_guard_runs_once_and_answers_emotion_ok(tmp_path):
    """A script with no ``__main__`` guard runs exactly once (workers never re-run it) and gets
    emotion ok on every event."""
    marker = tmp_path / "imports.txt"
    script = tmp_path / "chat_script.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\n" + API_SCRIPT)
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               timeout=SCRIPT_TIMEOUT_S, cwd=tmp_path, env=_script_env())
    assert _answers(completed) == [["ok", []]] * 3
    assert marker.read_text().splitlines() == ["ran"]


@dataclass
class WorkerPid:
    """Reports the pid of the worker process that ran it, after holding that worker for
    ``hold_s``, or ``long_hold_s`` for a message that contains ``[hold]`` (long enough for a
    kill to land inside the call, even from a test process a loaded machine slows down). With
    ``calls_dir``, each call first leaves a file there, so a test can see that a call has
    begun in the worker."""

    name: str = "worker_pid"
    kind: ExecutionKind = ExecutionKind.PROCESS
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 20.0
    hold_s: float = 0.1
    long_hold_s: float = 1.0
    calls_dir: str = ""

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        if self.calls_dir:
            Path(self.calls_dir, f"{context.event.event_id}.call").touch()
        time.sleep(self.long_hold_s if "[hold]" in context.event.content else self.hold_s)
        return {"pid": os.getpid()}


async def _until_a_call_begins(calls_dir: Path, seen: int, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while len(list(calls_dir.iterdir())) <= seen:
            await asyncio.sleep(0.002)


async def test_sigkilled_worker_is_replaced_and_later_events_get_emotion_ok(caplog, tmp_path):
    """SIGKILL of the pool's worker mid-run: the death is logged with its pid and signal, the pool
    is replaced, the calls in flight are answered (run again alone), no event is lost, and
    events after it are answered by a new worker, emotion ok."""
    caplog.set_level(logging.ERROR, logger="processors.pool")
    manager = await create_concurrent_conversation_manager(
        max_worker_processes=1, processor_timeout_seconds=20, processor_kinds="emotion=process",
        processors=[EmotionProcessor(timeout_s=20.0),
                    WorkerPid(hold_s=0.2, calls_dir=str(tmp_path))])
    responses: list[Any] = []
    killed: int | None = None

    async def ask(i: int, hold: bool = False) -> Any:
        async with asyncio.timeout(60):
            return await manager.process_conversation_message(
                user_id=f"u{i % 3}", channel_id="c1",
                content=f"message {i}: I am happy{' [hold]' if hold else ''}", bot_id="b1")

    asked = 0
    try:
        for i in range(20):
            calls_before = len(list(tmp_path.iterdir()))
            batch = asyncio.gather(ask(2 * i, hold=i == 10), ask(2 * i + 1, hold=i == 10))
            asked += 2
            if i == 10:
                # Inside this batch's calls (each holds the worker for a second): their
                # attempts fail over to the replacement pool.
                await _until_a_call_begins(tmp_path, calls_before)
                killed = _pid_of(responses[-1])
                assert killed is not None
                os.kill(killed, signal.SIGKILL)
            responses.extend(await batch)
            if killed is not None and _pid_of(responses[-1]) not in (None, killed):
                break
        later = [await ask(1000 + i) for i in range(5)]
    finally:
        await manager.stop()

    assert killed is not None and len(responses) == asked
    # The calls the kill cut short ran again, alone, in the isolation pool, within their
    # attempt: answered, by another worker than the one killed.
    held = responses[20:22]
    assert all(_pid_of(r) not in (None, killed) for r in held), "the kill did not land inside a call"
    assert all(r.analysis["worker_pid"].attempts == 1 for r in held)
    assert all(r.analysis["emotion"].status is ProcessorStatus.OK for r in later), [
        (r.analysis["emotion"].status, r.analysis["emotion"].error) for r in later]
    new_pids = {_pid_of(r) for r in later}
    assert len(new_pids) == 1 and killed not in new_pids
    deaths = [r.getMessage() for r in caplog.records if r.name == "processors.pool"]
    assert len(deaths) == 1, deaths
    assert f"worker pid {killed} killed by SIGKILL" in deaths[0]


def _pid_of(response: Any) -> int | None:
    outcome = response.analysis["worker_pid"]
    return outcome.data.get("pid") if outcome.status is ProcessorStatus.OK else None


# -- the pool on its own -----------------------------------------------------------------------


class Unloadable:
    """Pickles fine here; unpickling it in the worker raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def _refuse_to_load() -> None:
    raise LookupError("this object refuses to be loaded")


class RudeError(Exception):
    """An exception that pickles but cannot be unpickled (its __init__ wants two arguments)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def _echo(value: Any) -> int:
    return os.getpid()


def _raise_rude() -> None:
    raise RudeError(7, "no")


def test_call_that_cannot_be_loaded_or_answered_fails_alone():
    """A call the worker cannot unpickle, or whose exception cannot travel back, fails with its
    own error; the pool is not broken and the same worker answers the next call."""
    pool = process_pool(1)
    try:
        first = pool.submit(_echo, None).result(timeout=60)
        with pytest.raises(TypeError, match="cannot load this call"):
            pool.submit(_echo, Unloadable()).result(timeout=60)
        with pytest.raises(RuntimeError, match="RudeError: 7: no"):
            pool.submit(_raise_rude).result(timeout=60)
        with pytest.raises(TypeError, match="cannot send this call"):  # refused here, at submit
            pool.submit(_echo, lambda: None)
        assert pool.submit(_echo, None).result(timeout=60) == first
        assert pool.worker_pids() == [first]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def test_worker_survives_sigint():
    """SIGINT (a terminal's Ctrl-C reaches the whole process group) leaves the worker running:
    the parent decides when its pool stops."""
    pool = process_pool(1)
    try:
        pid = pool.submit(_echo, None).result(timeout=60)
        status = Path(f"/proc/{pid}/status")
        if status.exists():  # Linux: the kernel says which signals the process ignores
            ignored = int(next(line for line in status.read_text().splitlines()
                               if line.startswith("SigIgn:")).split()[1], 16)
            assert ignored & (1 << (signal.SIGINT - 1)), "the worker does not ignore SIGINT"
        os.kill(pid, signal.SIGINT)
        # No wait needed: the signal is pending before the worker runs again, so a worker that
        # did not ignore it would end before taking this call.
        assert pool.submit(_echo, None).result(timeout=60) == pid
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


ORPHAN_SCRIPT = """
import os, time
from processors.pool import process_pool

pool = process_pool(1)
print("WORKER", pool.submit(os.getpid).result(timeout=60), flush=True)
time.sleep(120)
"""


def test_worker_exits_when_its_parent_is_killed(tmp_path):
    """A worker whose parent was SIGKILLed exits by itself instead of waiting forever."""
    worker: psutil.Process | None = None
    parent = subprocess.Popen([sys.executable, "-"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                              env=_script_env())
    try:
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.write(textwrap.dedent(ORPHAN_SCRIPT))
        parent.stdin.close()
        line = parent.stdout.readline()  # bounded by the script's own 60 s result timeout
        assert line.startswith("WORKER "), line
        worker = psutil.Process(int(line.split()[1]))
        assert worker.ppid() == parent.pid
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the orphaned worker is still running"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if worker is not None and _alive(worker):
            worker.kill()  # psutil checks the pid still names the same process


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

"""The process pool of PROCESS processors: fresh workers that never run the parent's ``__main__``.

Contract of ``process_pool(max_workers)`` (a ``ProcessorPool``, a ``ProcessPoolExecutor``):

- Workers are new interpreters started like "spawn" (nothing is forked from this process, so it
  is safe next to threads and a running event loop), but they never import the parent's main
  module: a script read from standard input, a REPL, a notebook, or a script without an
  ``if __name__ == "__main__":`` guard runs once, in the parent only. What a worker is sent must
  therefore live in an importable module; a call that refers to ``__main__`` fails alone, with a
  ``TypeError`` saying so. Nothing process-wide is changed (no start method, no forkserver
  preload), so the application's own use of ``multiprocessing`` is unaffected.
- Before its first call a worker imports ``preload`` and runs ``warm_ups`` (by default the
  built-in emotion analyzer); a failure there is printed by the worker and left for the first
  call to report, so it cannot break every pool made after it. Workers ignore SIGINT (the parent
  decides when to stop, e.g. after a graceful drain) and exit when the parent process is gone.
- A call that cannot be pickled raises ``TypeError`` from ``submit``, in the caller. One the
  worker cannot unpickle, or whose exception could not travel back, fails alone: only a worker's
  death breaks the pool.
- When a worker dies, the pool is broken as any ``ProcessPoolExecutor`` is: its calls and every
  later ``submit`` raise ``BrokenProcessPool``. This is logged once, at ERROR, as soon as the
  pool sees it (a call in flight, the next ``submit`` or ``shutdown``), with the dead worker's
  pid and exit code (the signal's name when it was killed), or the reason when no worker died.
  Replacing the pool is the owner's job (``ProcessorPipeline`` does it and retries the attempt).

Validated against CPython 3.11's ``multiprocessing``; elsewhere than POSIX the standard "spawn"
context is used (workers there import ``__main__`` as usual).
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import connection, context, parent_process, reduction, spawn, util
from typing import Any

__all__ = [
    "DEFAULT_PRELOAD",
    "DEFAULT_WARM_UPS",
    "ProcessorPool",
    "describe_exit",
    "process_pool",
    "warm_emotion",
]

log = logging.getLogger(__name__)

# Modules of the built-in PROCESS processors: importing them is most of a worker's start-up.
DEFAULT_PRELOAD: tuple[str, ...] = ("processors.emotion",)


def warm_emotion() -> None:
    """Build this worker's VADER analyzer (parses the lexicon) before the first event needs it."""
    from processors.emotion import EmotionProcessor

    EmotionProcessor().warm_up()


DEFAULT_WARM_UPS: tuple[Callable[[], object], ...] = (warm_emotion,)


def process_pool(
    max_workers: int,
    *,
    preload: Iterable[str] = DEFAULT_PRELOAD,
    warm_ups: Iterable[Callable[[], object]] = DEFAULT_WARM_UPS,
) -> ProcessorPool:
    """A pool of ``max_workers`` main-less workers, each warmed up as described above.

    Workers start with the first calls that need them (``ProcessorPipeline.start_warm_up``
    sends those right away). ``warm_ups`` must be picklable functions of importable modules.
    """
    return ProcessorPool(max_workers, preload=preload, warm_ups=warm_ups)


def describe_exit(code: int | None) -> str:
    """How a worker ended, in words, from its exit code (negative: the signal that killed it)."""
    if code is None:
        return "exit code not obtainable"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"killed by {name} (from outside: kill -9, a supervisor, or the OOM killer)"
        return f"killed by {name}"
    if code == 1:
        return "exited with code 1 (usually an uncaught exception: its traceback is on stderr)"
    return f"exited with code {code}"


class ProcessorPool(ProcessPoolExecutor):
    """See the module docstring."""

    def __init__(
        self,
        max_workers: int,
        *,
        preload: Iterable[str] = DEFAULT_PRELOAD,
        warm_ups: Iterable[Callable[[], object]] = DEFAULT_WARM_UPS,
    ) -> None:
        super().__init__(
            max_workers,
            mp_context=_worker_context(),
            initializer=_prepare_worker,
            initargs=(tuple(preload), tuple(warm_ups)),
        )
        self._break_lock = threading.Lock()
        self._break_reported = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        # Pickled here, not in the queue's feeder thread: the caller gets the error, and the
        # worker unpickles inside the call, where a failure is that call's error and not an
        # exception in the worker's loop (which would kill it and break the pool).
        try:
            payload = bytes(reduction.ForkingPickler.dumps((fn, args, kwargs)))
        except Exception as exc:
            raise TypeError(f"cannot send this call to a process worker: "
                            f"{type(exc).__name__}: {exc}") from exc
        try:
            future = super().submit(_call, payload)
        except BrokenProcessPool as exc:
            self._report_break(exc)
            raise
        # Added before the caller's own callbacks: the death is logged before it is handled.
        future.add_done_callback(self._check_broken)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._broken:  # a death nobody submitted to since is still worth a line
            self._report_break(None)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)

    def worker_pids(self) -> list[int]:
        """Pids of the workers started so far (empty before the first call)."""
        return [p.pid for p in _snapshot(self._processes) if p.pid is not None]

    def _check_broken(self, future: Future[Any]) -> None:
        if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
            self._report_break(future.exception())

    def _report_break(self, error: BaseException | None) -> None:
        with self._break_lock:
            if self._break_reported:
                return
            self._break_reported = True
        try:
            log.error("%s", self._explain_break(error))
        except Exception:  # explaining must never hide the break itself
            log.exception("process pool broken (could not tell why)")

    def _explain_break(self, error: BaseException | None) -> str:
        dead = _dead_workers(self._processes)
        if dead:
            deaths = "; ".join(f"worker pid {pid} {describe_exit(code)}" for pid, code in dead)
            return (f"process pool broken: {deaths}. Calls in flight in this pool fail; "
                    f"{len(_snapshot(self._processes)) - len(dead)} other worker(s) are stopped")
        cause = getattr(error, "__cause__", None)
        if cause is not None:  # the result pipe failed: no worker had to die for that
            last = str(cause).strip().splitlines()[-1:] or [type(cause).__name__]
            return f"process pool broken without a worker death: {last[0]}"
        return "process pool broken; no worker's exit could be observed"


def _snapshot(processes: Mapping[int, Any] | None) -> list[Any]:
    # The executor's manager thread changes this dict; a copy may need a second try.
    for _ in range(3):
        try:
            return list((processes or {}).values())
        except RuntimeError:
            continue
    return []


def _dead_workers(processes: Mapping[int, Any] | None) -> list[tuple[int, int | None]]:
    """(pid, exit code) of workers that ended by themselves, not stopped by the pool."""
    dead = []
    for process in _snapshot(processes):
        if getattr(process, "stopped_by_pool", False) or not _has_ended(process):
            continue
        if process.exitcode is None:
            # Its pipe closed as it exited; the exit status follows a moment later.
            process.join(timeout=1.0)
        dead.append((process.pid, process.exitcode))
    return dead


def _has_ended(process: Any) -> bool:
    if process.exitcode is not None:
        return True
    try:
        return bool(connection.wait([process.sentinel], timeout=0))
    except (OSError, ValueError):  # the sentinel is closed once the pool let go of the worker
        return False


# -- in the worker ---------------------------------------------------------------------------


def _prepare_worker(preload: tuple[str, ...], warm_ups: tuple[Callable[[], object], ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException:
            _print_worker_error(f"could not preload {name}")
    for warm_up in warm_ups:
        try:
            warm_up()
        except BaseException:
            _print_worker_error(f"warm-up {getattr(warm_up, '__qualname__', warm_up)!r} failed")


def _print_worker_error(what: str) -> None:
    # Printed, not raised: an initializer that raises kills the worker, and a pool made after it
    # would fail the same way, over and over.
    print(f"chatstream process worker {os.getpid()}: {what}:\n{traceback.format_exc()}",
          file=sys.stderr, flush=True)


def _exit_with_parent() -> None:
    # A worker whose parent was killed would otherwise wait for calls forever: it holds both
    # ends of its own call queue. The parent's end of the start-up pipe closes when it dies.
    parent = parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:
        return

    def watch() -> None:
        try:
            connection.wait([sentinel])
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="chatstream-parent-watch", daemon=True).start()


def _call(payload: bytes) -> Any:
    try:
        fn, args, kwargs = pickle.loads(payload)
    except Exception as exc:
        raise _unloadable(exc) from None
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if _travels(exc):
            raise
        raise RuntimeError(f"{type(exc).__name__}: {exc} (the original exception cannot be "
                           f"pickled back from the worker)") from None


def _unloadable(exc: Exception) -> TypeError:
    text = f"{type(exc).__name__}: {exc}"
    if "__main__" in text or "__mp_main__" in text:
        return TypeError(f"a process worker cannot load this call ({text}): what runs in a "
                         "process worker must be defined in an importable module, not in "
                         "__main__, which workers do not run")
    return TypeError(f"a process worker cannot load this call ({text})")


def _travels(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True


# -- starting workers ------------------------------------------------------------------------


def _preparation_data(name: str) -> dict[str, Any]:
    # What "spawn" sends a new worker, minus the main module: with it, the worker would run the
    # parent's main script again (or fail on a script that has no file, like "<stdin>").
    data = spawn.get_preparation_data(name)
    data.pop("init_main_from_name", None)
    data.pop("init_main_from_path", None)
    return data


if sys.platform != "win32":
    from multiprocessing import popen_spawn_posix

    class _MainlessPopen(popen_spawn_posix.Popen):
        """``popen_spawn_posix.Popen`` with ``_preparation_data`` in place of the stdlib's."""

        def _launch(self, process_obj: Any) -> None:
            # The stdlib's _launch (3.11), which offers no hook for the preparation data.
            from multiprocessing import resource_tracker

            tracker_fd = resource_tracker.getfd()
            self._fds.append(tracker_fd)  # type: ignore[attr-defined]
            prep_data = _preparation_data(process_obj._name)
            fp = io.BytesIO()
            context.set_spawning_popen(self)
            try:
                reduction.dump(prep_data, fp)
                reduction.dump(process_obj, fp)
            finally:
                context.set_spawning_popen(None)

            parent_r = child_w = child_r = parent_w = None
            try:
                parent_r, child_w = os.pipe()
                child_r, parent_w = os.pipe()
                cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
                self._fds.extend([child_r, child_w])  # type: ignore[attr-defined]
                self.pid = util.spawnv_passfds(
                    spawn.get_executable(), cmd,  # type: ignore[arg-type]
                    self._fds)  # type: ignore[attr-defined]
                self.sentinel = parent_r
                with open(parent_w, "wb", closefd=False) as f:
                    f.write(fp.getbuffer())
            finally:
                fds_to_close = [fd for fd in (parent_r, parent_w) if fd is not None]
                self.finalizer = util.Finalize(
                    self, util.close_fds, fds_to_close)  # type: ignore[attr-defined]
                for fd in (child_r, child_w):
                    if fd is not None:
                        os.close(fd)

    class _WorkerProcess(context.SpawnProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            return _MainlessPopen(process_obj)

        def terminate(self) -> None:
            # Only a broken pool stops its workers this way, the dead one included: a worker
            # still running then did not die by itself.
            if not _has_ended(self):
                self.stopped_by_pool = True
            super().terminate()

    class _WorkerContext(context.SpawnContext):
        Process = _WorkerProcess

    def _worker_context() -> context.BaseContext:
        return _WorkerContext()

else:  # pragma: no cover - chatstream runs on POSIX; Windows keeps the standard behaviour

    def _worker_context() -> context.BaseContext:
        import multiprocessing

        return multiprocessing.get_context("spawn")

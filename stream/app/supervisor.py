"""``chatstream run --workers N``: N group members as child processes under one supervisor.

Rules, in the order they apply:
1. Each member is a ``chatstream run`` child with ``CHATSTREAM_WORKERS=1`` (so it runs in
   process); with ``CHATSTREAM_HTTP_PORT`` P > 0, member i serves on P + i (0 stays 0: each
   picks a free port); with ``CHATSTREAM_GROUP_INSTANCE_ID`` I, member i is ``I-i``.
   Children are asked to die with the supervisor (Linux parent-death signal), so a killed
   supervisor leaves no orphan consuming.
2. SIGTERM and SIGINT are forwarded to every member; the supervisor then waits for them to
   drain and exits 0 if they all exited 0.
3. A member that exits while the supervisor is not stopping is restarted, after a backoff
   that doubles from 0.5 s up to 10 s, and starts again from 0.5 s for a member that had run
   longer than ``window_s`` before it exited.
4. More than ``max_deaths`` unexpected exits within ``window_s`` means the members keep dying
   (an unreachable broker, a crash on start): the rest are stopped and the supervisor exits 1.
5. A member that exits 2 was refused its configuration (``SettingsError``: a setting, a
   plugin, a topic with too few partitions), which a restart cannot mend: nothing is
   restarted, the rest are stopped and the supervisor exits 2.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import TypeAdapter

from stream.settings import Settings, SettingsError

__all__ = ["Supervisor", "member_command"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_FIRST_BACKOFF_S = 0.5


def member_command() -> list[str]:
    return [sys.executable, "-c", "from stream.app.cli import main; main()", "run"]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):  # not Linux: rule 1 holds on Linux only
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Member:
    index: int
    process: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    started_at: float = 0.0
    backoff_s: float = _FIRST_BACKOFF_S


# The first member's port, with the bounds the settings give it.
_PORT = TypeAdapter(Annotated[int, *Settings.model_fields["http_port"].metadata])
_PER_MEMBER = {"CHATSTREAM_WORKERS", "CHATSTREAM_HTTP_PORT", "CHATSTREAM_GROUP_INSTANCE_ID"}


@dataclass
class Supervisor:
    workers: int
    env: Mapping[str, str]
    command: Sequence[str] = field(default_factory=member_command)
    max_deaths: int = 5
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _members: list[_Member] = field(init=False, default_factory=list)
    _deaths: deque[float] = field(init=False, default_factory=deque)
    _stopping: bool = field(init=False, default=False)
    _refused: bool = field(init=False, default=False)  # a member exited with a settings error

    def run(self) -> int:
        """Start the members and supervise them until they are all gone; the exit code."""
        previous = {signum: signal.signal(signum, self._forward)
                    for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._http_port()  # a port range that cannot fit fails before any member starts
            self._members = [_Member(i) for i in range(self.workers)]
            for member in self._members:
                self._start(member)
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _member_env(self, index: int) -> dict[str, str]:
        # Variable names are case-insensitive (as the settings read them): the ones set per
        # member are found in any case and written back in upper case.
        env = {k: v for k, v in self.env.items() if k.upper() not in _PER_MEMBER}
        given = {k.upper(): v for k, v in self.env.items() if k.upper() in _PER_MEMBER}
        env["CHATSTREAM_WORKERS"] = "1"
        port = self._http_port()
        if port is not None:
            env["CHATSTREAM_HTTP_PORT"] = str(port + index if port > 0 else 0)
        # Two members with one instance id would fence each other out of the group.
        if given.get("CHATSTREAM_GROUP_INSTANCE_ID"):
            env["CHATSTREAM_GROUP_INSTANCE_ID"] = f"{given['CHATSTREAM_GROUP_INSTANCE_ID']}-{index}"
        return env

    def _http_port(self) -> int | None:
        """The first member's port, read as the settings read it (``" 8080"`` is 8080)."""
        given = next((v for k, v in self.env.items() if k.upper() == "CHATSTREAM_HTTP_PORT"), "")
        if not given.strip():
            return None
        port = _PORT.validate_python(given)
        if port > 0 and port + self.workers - 1 > 65535:
            raise SettingsError(f"CHATSTREAM_HTTP_PORT={port}: {self.workers} members need "
                                f"ports up to {port + self.workers - 1}, above 65535")
        return port

    def _start(self, member: _Member) -> None:
        if self._stopping:  # a stop came first: nothing to start
            return
        member.process = subprocess.Popen(list(self.command), env=self._member_env(member.index),
                                          preexec_fn=_die_with_parent)
        member.started_at = self.clock()
        log.info("member %d started (pid %d)", member.index, member.process.pid)
        if self._stopping:  # the signal came while it started, before it could be forwarded
            member.process.send_signal(signal.SIGTERM)

    def _forward(self, signum: int, _frame: object) -> None:
        self._stopping = True
        for member in self._members:
            if member.process is not None and member.process.poll() is None:
                member.process.send_signal(signum)

    def _supervise(self) -> int:
        failed = False
        while True:
            alive = False
            for member in self._members:
                alive |= self._check(member)
            if self._keeps_dying() and not self._stopping:
                log.error("members keep dying (%d exits within %.0f s): stopping",
                          len(self._deaths), self.window_s)
                failed = True
                self._forward(signal.SIGTERM, None)
            if not alive and (self._stopping or failed):
                break
            time.sleep(0.1)
        if self._refused:
            return SettingsError.exit_code
        codes = [m.process.returncode for m in self._members if m.process is not None]
        # A member the stop reached before it set up its signal handlers ended by the signal
        # itself: it had nothing to drain yet.
        stopped_early = {-signal.SIGTERM, -signal.SIGINT} if self._stopping else set()
        return 1 if failed or any(code and code not in stopped_early for code in codes) else 0

    def _check(self, member: _Member) -> bool:
        """Restart ``member`` if it died unexpectedly; whether it is (or will be) running."""
        process = member.process
        if process is not None and process.poll() is None:
            return True
        if self._stopping:
            return False
        now = self.clock()
        if process is not None and process.returncode == SettingsError.exit_code:
            log.error("member %d (pid %d) was refused its configuration (exit %d; its reason "
                      "is above): stopping, as a restart would be refused the same",
                      member.index, process.pid, process.returncode)
            self._refused = True
            self._forward(signal.SIGTERM, None)
            return False
        if process is not None:  # it just exited: count the death, schedule the restart
            if now - member.started_at > self.window_s:  # it ran well: restart it promptly
                member.backoff_s = _FIRST_BACKOFF_S
            log.warning("member %d (pid %d) exited with %s; restarting in %.1f s",
                        member.index, process.pid, process.returncode, member.backoff_s)
            self._deaths.append(now)
            member.process, member.restart_at = None, now + member.backoff_s
            member.backoff_s = min(member.backoff_s * 2, 10.0)
        elif now >= member.restart_at:
            self._start(member)
        return True

    def _keeps_dying(self) -> bool:
        now = self.clock()
        while self._deaths and self._deaths[0] < now - self.window_s:
            self._deaths.popleft()
        return len(self._deaths) > self.max_deaths


def supervise(workers: int, env: Mapping[str, str] | None = None) -> int:
    """Run ``workers`` members under a ``Supervisor``; the process exit code."""
    return Supervisor(workers, dict(os.environ if env is None else env)).run()

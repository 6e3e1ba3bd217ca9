"""Readiness of a member: partitions assigned (not handing over) and the broker answering.

A frozen or unreachable broker does not make aiokafka fail anything quickly: fetches, commits
and publishes just wait (they resume when it is back, losing nothing), so ``watch_broker``
keeps a metadata request going; while one stays unanswered for ``stall_s``, or fails, the
member is not ready. ``/readyz`` reads ``ready``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from stream.kafka.client import GroupConsumer

__all__ = ["Readiness"]

log = logging.getLogger(__name__)


class Readiness:
    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self._member_ok = False
        self._broker_ok = True

    def set_member(self, ok: bool) -> None:
        """Whether the member holds partitions it can answer (False while handing over)."""
        self._member_ok = ok
        self._refresh()

    def set_broker(self, ok: bool, why: str = "") -> None:
        if ok != self._broker_ok:
            if ok:
                log.info("broker answers again: ready if partitions are assigned")
            else:
                log.warning("broker not answering (%s): not ready", why)
        self._broker_ok = ok
        self._refresh()

    def _refresh(self) -> None:
        if self._member_ok and self._broker_ok:
            self.ready.set()
        else:
            self.ready.clear()

    async def watch_broker(self, consumer: GroupConsumer, stall_s: float,
                           interval_s: float = 1.0) -> None:
        """Probe the broker until cancelled (see the module docstring)."""
        probe: asyncio.Future[Any] | None = None
        try:
            while True:
                probe = asyncio.ensure_future(consumer.topics())
                done, _ = await asyncio.wait({probe}, timeout=stall_s)
                if not done:
                    self.set_broker(False, f"no answer for {stall_s:.1f} s")
                    await asyncio.wait({probe})  # not cancelled: the answer may still come
                error = probe.exception()
                self.set_broker(error is None, str(error))
                await asyncio.sleep(interval_s)
        finally:
            if probe is not None and not probe.done():
                probe.cancel()

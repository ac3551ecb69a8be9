"""The marker wait: how an idle FastWorker learns there is work (a FastWorker mixin).

Idle slots park on futures; one task per worker blocks with BZPOPMIN on the queue's
marker (BullMQ adds a marker when a job becomes waiting, and a scored one for the
first delayed job) and wakes one parked slot per marker. A delayed job's marker says
when to look next, so the wait ends at its due time, not after `drainDelay`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import redis.asyncio as aioredis

from errand.clock import now_ms
from errand.redisio.connection import url_of

MAX_BLOCK_S = 10.0  # bullmq caps BZPOPMIN so a dropped connection is noticed
MIN_BLOCK_S = 0.001
ERROR_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)


class MarkerWait:
    """Parks idle slots and wakes them from the marker."""

    opts: dict[str, Any]
    client: Any
    bclient: Any
    scripts: Any
    closing: bool
    _idle: deque[asyncio.Future[None]]
    _idle_event: asyncio.Event
    _block_until: int
    _due_ms: int

    def emit(self, event_name: str, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def _saw_delayed(self, due: Any) -> None:
        raise NotImplementedError

    def _blocking_client(self) -> Any:
        """A dedicated connection for the marker's BZPOPMIN, like the one the scripts use
        (on a cluster the options give a shared cluster client instead, see runner.py)."""
        connection = self.opts["connection"]
        return aioredis.from_url(
            connection if isinstance(connection, str) else url_of(self.client),
            decode_responses=True,
            single_connection_client=True,
        )

    async def _wait_idle(self) -> None:
        """Park this slot until the marker wakes it (or close() does)."""
        if self.closing:  # close() already woke the idle slots; do not start waiting now
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        self._idle_event.set()
        await waiter

    async def _wake_idle_slots(self) -> None:
        """While slots are idle, block on the marker and wake one slot per marker."""
        errors = 0
        while not self.closing:
            if not self._idle:
                self._idle_event.clear()
                await self._idle_event.wait()
                continue
            try:
                popped = await self.bclient.bzpopmin(
                    self.scripts.keys["marker"], self._block_timeout()
                )
                errors = 0
            except Exception as err:
                if self.closing:
                    return
                self.emit("error", err)
                await asyncio.sleep(ERROR_BACKOFF_S[min(errors, len(ERROR_BACKOFF_S) - 1)])
                errors += 1
                continue
            if popped:
                score = int(float(popped[2]))
                if score:  # a delayed job's marker (a base marker scores 0)
                    self._saw_delayed(score)
                if score > now_ms():  # sleep until it is due
                    self._block_until = score
                    continue
            self._block_until = 0
            while self._idle:
                waiter = self._idle.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break

    def _block_timeout(self) -> float:
        """Until the rate limit, or the first delayed job's due time (known past its marker)."""
        if until := self._block_until or self._due_ms:
            delay_s = (until - now_ms()) / 1000
            return MIN_BLOCK_S if delay_s < MIN_BLOCK_S else min(delay_s, MAX_BLOCK_S)
        return max(float(self.opts["drainDelay"]), MIN_BLOCK_S)

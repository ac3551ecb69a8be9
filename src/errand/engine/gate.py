"""SlotGate: one queue's concurrency shared fairly by the workers of its partitions.

The fast engine runs one FastWorker per partition; each may hold up to the queue's
whole concurrency, so one hot partition can use every slot. A slot takes a permit
before it takes a job and gives it back when it stops working. Waiters are served
first come, first served, and a slot that has run `STREAK` jobs in a row while others
wait gives its permit back instead of fetching its next job (a partition that just
got work waits at most a few jobs' time, however deep another partition's backlog).

While due delayed jobs wait, every fetch runs BullMQ's promotion of up to 1,000 of
them first; `PromotionTurns` lets one such fetch run at a time per queue, and lets
one partition finish promoting before the next starts (engine/promotion.py).
"""

from __future__ import annotations

import asyncio
from collections import deque

STREAK = 16
"""Jobs a slot runs in a row before it yields to a waiting slot (fetch-next saves one
round trip per job; yielding costs one moveToActive, so once per 16 jobs is cheap)."""


class SlotGate:
    """A fair semaphore with a `contended` test."""

    def __init__(self, permits: int) -> None:
        self._free = permits
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.promotions = PromotionTurns()

    async def acquire(self) -> None:
        """Wait for a permit (FIFO)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted as it was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a permit back: to the first live waiter, or to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def should_yield(self, streak: int) -> bool:
        """True when a slot that ran `streak` jobs in a row should let a waiter go first."""
        return streak >= STREAK and any(not w.done() for w in self._waiters)


class OpenGate(SlotGate):
    """No limit beyond the worker's own slots (one partition: the engine as it always was)."""

    def __init__(self) -> None:
        super().__init__(0)

    async def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None

    def should_yield(self, streak: int) -> bool:
        return False


class PromotionTurns:
    """One promoting fetch at a time per queue, partition by partition.

    When a turn ends, a waiting slot of the partition whose fetch ran goes next while
    that partition still has due delayed jobs, so partitions finish promoting one after
    another and each starts its ordinary drain as early as it can, not all at the end.
    A free turn goes to whoever asks (a partition with due jobs never holds it idle).
    """

    def __init__(self) -> None:
        self._busy = False
        self._owner: object | None = None
        self._waiters: deque[tuple[object, asyncio.Future[None]]] = deque()

    async def take(self, owner: object) -> None:
        """Wait until `owner` (a partition's worker) may run one promoting fetch."""
        if not self._busy:  # nobody fetching: even while another partition has due jobs
            self._busy, self._owner = True, owner
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((owner, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(owner, still_due=True)  # granted as it was cancelled: pass it on
            raise

    def give(self, owner: object, still_due: bool) -> None:
        """The fetch is done; `still_due`: `owner` has due delayed jobs left to promote."""
        self._busy = False
        self._owner = owner if still_due else None
        live = [(o, w) for o, w in self._waiters if not w.done()]
        nxt = next(((o, w) for o, w in live if o is self._owner), live[0] if live else None)
        self._waiters = deque(item for item in live if item is not nxt)
        if nxt is not None:
            self._busy, self._owner = True, nxt[0]
            nxt[1].set_result(None)

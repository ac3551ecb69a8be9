"""Due delayed jobs in bulk: the fast engine's side of BullMQ's promotion (a FastWorker mixin).

BullMQ promotes due delayed jobs inside its fetch scripts (moveToActive, and
moveToFinished with fetchNext): each fetch first moves up to 1,000 due jobs to the
wait/prioritized set, then takes one. When 100,000 notifications come due at the same
second, the first hundred fetches each carry 1,000 promotions (~17 ms of Valkey each);
with every slot fetching at once they queued up in Valkey ahead of the few jobs
already taken, whose every command then waited behind all of them.

So while the worker knows that its delayed set holds due jobs, its fetches take a turn
(gate.PromotionTurns: one promoting fetch per queue at a time, one partition after
another) and finishing a job does not fetch the next one. After each turn it reads the
head of the delayed set to know whether due jobs are left. Promotion itself stays
BullMQ's (its scripts, its timestamps): this only orders the fetches, so no job is
taken before it is due and none is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from errand.clock import now_ms
from errand.engine.gate import SlotGate

DELAY_SCORE_SHIFT = 0x1000
"""BullMQ scores a delayed job `due ms * 0x1000 + a counter`."""


class Promotion:
    """Knows when the delayed set may hold due jobs, and orders fetches while it does."""

    gate: SlotGate
    client: Any
    scripts: Any
    _due_ms: int = 0  # when the delayed set's first job is due (0: none known)

    def _promoting(self) -> bool:
        """Whether a fetch now would promote due delayed jobs first (as far as known)."""
        return 0 < self._due_ms <= now_ms()

    def _saw_delayed(self, due_ms: int) -> None:
        """A script's reply or a delay marker said the first delayed job is due at `due_ms`."""
        self._due_ms = max(int(due_ms), 0)

    @contextlib.asynccontextmanager
    async def _fetch_turn(self) -> AsyncIterator[None]:
        """Around one fetch: a turn among the queue's fetches while due jobs wait."""
        if not self._promoting():
            yield
            return
        turns = self.gate.promotions
        await turns.take(self)
        still_due = True
        try:
            yield
            with contextlib.suppress(Exception):  # unread: stay careful; the next turn reads
                still_due = await self._still_due()
        finally:
            turns.give(self, still_due)

    async def _still_due(self) -> bool:
        """Read the delayed set's head: are due jobs left for the next fetch to promote?"""
        head = await self.client.zrange(self.scripts.keys["delayed"], 0, 0, withscores=True)
        self._due_ms = int(head[0][1]) // DELAY_SCORE_SHIFT if head else 0
        return self._promoting()

"""The fast engine's upkeep: renewing the locks of running jobs, recovering stalled ones."""

from __future__ import annotations

import asyncio
from typing import Any

from errand.clock import now_ms


class Upkeep:
    """extendLocks and moveStalledJobsToWait on bullmq's cadence (a FastWorker mixin)."""

    opts: dict[str, Any]
    closing: bool
    args: Any
    _lua: dict[str, Any]
    _locks: dict[str, list[Any]]

    def emit(self, event_name: str, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def _renew_locks(self) -> None:
        """extendLocks for jobs whose lock is a quarter of its duration old (bullmq's cadence)."""
        quarter_ms = self.opts["lockDuration"] / 4
        while not self.closing:
            await asyncio.sleep(quarter_ms / 1000)
            now = now_ms()
            due = [
                (job_id, lock)
                for job_id, lock in self._locks.items()
                if lock[1] + quarter_ms <= now
            ]
            if not due:
                continue
            for _, lock in due:
                lock[1] = now
            ids, tokens = [job_id for job_id, _ in due], [lock[0] for _, lock in due]
            try:
                failed = await self._lua["extendLocks"](*self.args.extend_locks(ids, tokens))
            except Exception as err:
                self.emit("error", err)
                continue
            for job_id in failed or ():
                self.emit("error", RuntimeError(f"could not renew lock for job {job_id}"))
            if failed:
                self.emit("lockRenewalFailed", list(failed))

    async def _check_stalled(self) -> None:
        """moveStalledJobsToWait now and every stalledInterval (one worker per interval runs it)."""
        interval_ms = int(self.opts["stalledInterval"])
        while not self.closing:
            try:
                keys, args = self.args.move_stalled(int(self.opts["maxStalledCount"]), interval_ms)
                for job_id in await self._lua["moveStalledJobsToWait"](keys, args) or ():
                    self.emit("stalled", job_id, "active")
            except Exception as err:
                self.emit("error", err)
            await asyncio.sleep(interval_ms / 1000)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until they end, cancelling again while one runs on.

    Python 3.11's `asyncio.wait_for` (inside the clients' connect) drops a cancellation
    that lands as the awaited call finishes: a loop that lost its cancellation would run
    on, and the worker's close would wait for it forever.
    """
    while any(not task.done() for task in tasks):
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=0.1)
    for task in tasks:  # retrieved, so none is reported as never retrieved
        if not task.cancelled():
            task.exception()

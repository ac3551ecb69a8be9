"""Schedules' runs in the worker: the next run made as bullmq's Worker makes it, and the
gate (queue/schedule_runs.py) every run passes before its processor.

BullMQ makes a scheduler's next run when a worker takes the current one: bullmq's
`Worker.nextJobFromJobData` upserts the scheduler with `producer_id` = the taken job,
and the script creates the next run only for the producer of the current one, so a
tick runs once across processes. errand's fast engine calls the same code, with the
same arguments, for every job it takes that carries a scheduler key (`rjk`).
"""

from __future__ import annotations

import logging
from typing import Any

from bullmq.custom_errors import DelayedError
from bullmq.job_scheduler import JobScheduler

from errand.processors.job import Processor
from errand.queue.schedule_runs import RunGate, RunVerdict

log = logging.getLogger("errand.worker.schedules")


async def schedule_next_run(worker: Any, job: Any) -> None:
    """bullmq's `Worker._scheduleNextIteration` for `job`, taken by `worker` (the fast engine
    runs it where bullmq's Worker does: when the job is taken, before its processor).

    A failure is the worker's "error" event, as in bullmq: the taken run still runs.
    """
    scheduler = getattr(worker, "_job_scheduler", None)
    if scheduler is None:
        scheduler = worker._job_scheduler = JobScheduler(worker)
    try:
        await scheduler.upsertJobScheduler(
            job.repeatJobKey,
            (job.opts or {}).get("repeat"),
            job.name,
            job.data,
            job.opts,
            override=False,
            producer_id=job.id,
        )
    except Exception as err:
        worker.emit(
            "error", RuntimeError(f"Failed to add repeatable job for next iteration: {err}")
        )


class ScheduledRuns:
    """Wraps a queue's processor so a schedule's run passes the gate first."""

    def __init__(self, redis: Any, keys: Any, keep_completed_s: int) -> None:
        self.gate = RunGate(redis, keys, keep_completed_s)

    def wrap(self, processor: Processor) -> Processor:
        async def gated(job: Any, token: str) -> Any:
            if job.repeatJobKey:
                first = job.attemptsMade == 0 and job.attemptsStarted <= 1
                verdict = await self.gate.admit(str(job.id), job.data, first, job.timestamp)
                if verdict.dropped:
                    await _drop(job, token, verdict)
                    raise DelayedError()  # the job is finished already: nothing more to do
            return await processor(job, token)

        return gated


async def _drop(job: Any, token: str, verdict: RunVerdict) -> None:
    """Finish a dropped run and remove it, so it leaves no job behind (a run of a deleted
    schedule also makes sure its scheduler is gone: a DELETE cut short leaves it)."""
    log.info("schedule run dropped (%s)", verdict, extra={"jobId": str(job.id)})
    job.opts["removeOnComplete"] = True
    await job.moveToCompleted(None, token, False)
    if verdict is RunVerdict.GONE:
        await job.backend.removeJobScheduler(job.repeatJobKey)

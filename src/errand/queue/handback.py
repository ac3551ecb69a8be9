"""Hand a stopping worker's unfinished jobs back to their queue at once, with BullMQ's own script.

A worker force-closed after the shutdown grace leaves its jobs in `active`, locked
until the lock expires and then found by another worker's stalled-job check: up to
`lockDuration + stalledInterval` of nobody working on them, and a stall counted
against `maxStalledCount`. `moveJobFromActiveToWait` (the script BullMQ uses to put a
rate-limited job back) does it now, atomically: it checks the lock is still ours,
deletes it, moves the job from `active` to the front of `wait` (or its priority band)
and emits a `waiting` event. The attempt that was cut short is not counted:
`attemptsMade` is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from errand.jobids import QueueName, partition_of
from errand.keys import Keys
from errand.queue.scripts import bullmq_script

log = logging.getLogger("errand.worker")

SCRIPT = "moveJobFromActiveToWait-9.lua"
_SCRIPT_KEYS = (
    "active",
    "wait",
    "stalled",
    "paused",
    "meta",
    "limiter",
    "prioritized",
    "marker",
    "events",
)


@dataclass(frozen=True, slots=True)
class HeldJob:
    """A job a worker was running when it was force-closed, and the token of its lock."""

    queue: QueueName
    job_id: str
    token: str
    attempt: int


async def hand_back(redis: Any, keys: Keys, held: list[HeldJob]) -> list[HeldJob]:
    """Move each held job from active back to wait if its lock is still ours.

    Returns the jobs moved. A job that finished meanwhile, or whose lock expired or
    went to another worker, is left alone (the script checks the lock token).
    """
    if not held:
        return []
    script = redis.register_script(bullmq_script(SCRIPT))
    moved = []
    for job in held:
        part = partition_of(job.job_id)
        script_keys = [keys.queue(job.queue, name, part) for name in _SCRIPT_KEYS]
        args = [job.job_id, job.token, keys.job(job.queue, job.job_id)]
        try:
            code = int(await script(keys=script_keys, args=args))
        except Exception as err:  # the stalled-job check recovers it later
            log.warning(
                "could not hand back job: %s",
                err,
                extra={"jobId": job.job_id, "queue": str(job.queue), "attempt": job.attempt},
            )
            continue
        if code >= 0:
            moved.append(job)
    return moved

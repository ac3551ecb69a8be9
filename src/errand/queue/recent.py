"""The most recent jobs of the queues, for the admin dashboard.

BullMQ keeps no index of jobs by creation time, so this takes the newest few of every
state (the head of `wait` and `active`, the top of each sorted set), orders those
candidates by creation time and snapshots the newest. A job is in one state at a
time, so the candidates cover every job created recently that still exists.
"""

from __future__ import annotations

import asyncio

from errand.errors import NotFound
from errand.jobids import QueueName
from errand.queue.facade import JobQueues
from errand.queue.snapshot import JobSnapshot

_LISTS = ("wait", "active")  # newest at the head (BullMQ LPUSHes)
_SORTED_SETS = ("prioritized", "delayed", "completed", "failed")


async def recent_jobs(queues: JobQueues, queue: QueueName | None, limit: int) -> list[JobSnapshot]:
    """Up to `limit` jobs, newest first, of one queue or of all of them (every partition)."""
    names = [
        (name, part)
        for name in ([queue] if queue else list(QueueName))
        for part in queues.partitions
    ]
    redis, keys = queues.redis, queues.keys
    async with redis.pipeline(transaction=False) as pipe:
        for name, part in names:
            for state in _LISTS:
                pipe.lrange(keys.queue(name, state, part), 0, limit - 1)
            for state in _SORTED_SETS:
                pipe.zrevrange(keys.queue(name, state, part), 0, limit - 1)
        replies = await pipe.execute()
    per_queue = len(_LISTS) + len(_SORTED_SETS)
    candidates = list(
        dict.fromkeys(
            (name, job_id)
            for index, (name, _) in enumerate(names)
            for reply in replies[index * per_queue : (index + 1) * per_queue]
            for job_id in reply
        )
    )
    async with redis.pipeline(transaction=False) as pipe:
        for name, job_id in candidates:
            pipe.hget(keys.job(name, job_id), "timestamp")
        stamps = await pipe.execute()
    newest = sorted(
        (
            (int(stamp), job_id)
            for (_, job_id), stamp in zip(candidates, stamps, strict=True)
            if stamp
        ),
        reverse=True,
    )[:limit]
    snapshots = await asyncio.gather(
        *(queues.snapshot(job_id) for _, job_id in newest), return_exceptions=True
    )
    found = []
    for snap in snapshots:
        if isinstance(snap, NotFound):
            continue  # removed meanwhile, or a job id errand did not issue
        if isinstance(snap, BaseException):
            raise snap
        found.append(snap)
    return found

"""The dead-letter queue: BullMQ's failed set of every queue, read and redriven through BullMQ.

A job lands there only when its attempts are exhausted (or it failed permanently),
so bull-board and errand show the same picture: there is no second copy to drift.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from bullmq import Job

from errand.errors import Conflict, NotFound
from errand.jobids import QueueName, partition_of, queue_of
from errand.queue.facade import JobQueues
from errand.queue.jobhash import attempts_made, client_of, int_field, json_field
from errand.statuses import JobStatus


@dataclass(frozen=True, slots=True)
class DeadLetter:
    job_id: str
    queue: QueueName
    name: str
    data: dict[str, Any]
    failed_reason: str | None
    attempts_made: int
    failed_ms: int

    @property
    def client_id(self) -> str:
        """The client that owns the job (jobs from before clients belong to `anonymous`)."""
        return client_of(self.data)


async def list_dead_letters(
    queues: JobQueues, queue: QueueName | None, limit: int, offset: int
) -> tuple[int, list[DeadLetter]]:
    """(total, one page) of dead-lettered jobs, newest failure first across queues and
    their partitions (`total` sums every partition's failed set)."""
    names = [name for name in ([queue] if queue else list(QueueName)) for _ in queues.partitions]
    redis, keys = queues.redis, queues.keys
    async with redis.pipeline(transaction=False) as pipe:
        for i, name in enumerate(names):
            failed = keys.queue(name, "failed", i % len(queues.partitions))
            pipe.zcard(failed)
            pipe.zrevrange(failed, 0, offset + limit - 1, withscores=True)
        replies = await pipe.execute()
    total = sum(int(n) for n in replies[0::2])
    ranked = heapq.merge(
        *(
            [(-score, job_id, name) for job_id, score in members]
            for name, members in zip(names, replies[1::2], strict=True)
        )
    )
    page = list(ranked)[offset : offset + limit]
    async with redis.pipeline(transaction=False) as pipe:
        for _, job_id, name in page:
            pipe.hgetall(keys.job(name, job_id))
        hashes = await pipe.execute()
    items = [
        _dead_letter(job_id, name, int(-neg_score), fields)
        for (neg_score, job_id, name), fields in zip(page, hashes, strict=True)
        if fields
    ]
    return total, items


def _dead_letter(
    job_id: str, queue: QueueName, failed_ms: int, fields: dict[str, str]
) -> DeadLetter:
    data = json_field(fields, "data", {})
    return DeadLetter(
        job_id=job_id,
        queue=queue,
        name=fields.get("name", ""),
        data=data if isinstance(data, dict) else {"value": data},
        failed_reason=fields.get("failedReason") or None,
        attempts_made=attempts_made(fields),
        failed_ms=int_field(fields, "finishedOn") or failed_ms,
    )


async def _dead_lettered_job(queues: JobQueues, job_id: str) -> Job:
    queue = queue_of(job_id)
    if queue is None:
        raise NotFound(f"no job with id {job_id!r}")
    snap = await queues.snapshot(job_id)
    if snap.status is not JobStatus.FAILED:
        raise Conflict(
            f"job {job_id!r} is {snap.status}, not dead-lettered", job_status=snap.status
        )
    job = await Job.fromId(queues.bullmq(queue, partition_of(job_id)), job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return job


async def retry_dead_letter(queues: JobQueues, job_id: str) -> None:
    """Move a dead-lettered job back to waiting with a fresh set of attempts.

    Raises NotFound for an unknown id, Conflict when the job is not dead-lettered.
    """
    job = await _dead_lettered_job(queues, job_id)
    try:
        await job.retry("failed", {"resetAttemptsMade": True, "resetAttemptsStarted": True})
    except Exception as err:  # BullMQ raises a bare Exception when the job left `failed`
        raise Conflict(f"job {job_id!r} could not be retried: {err}") from err


async def delete_dead_letter(queues: JobQueues, job_id: str) -> None:
    """Remove a dead-lettered job for good.

    Raises NotFound for an unknown id, Conflict when the job is not dead-lettered.
    """
    job = await _dead_lettered_job(queues, job_id)
    try:
        await job.remove()
    except Exception as err:  # BullMQ raises a bare Exception when the job is locked
        raise Conflict(f"job {job_id!r} could not be removed: {err}") from err

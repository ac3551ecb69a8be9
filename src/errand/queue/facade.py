"""JobQueues: the typed facade over BullMQ queues that the API and services use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bullmq import Job, Queue

from errand.errors import NotFound
from errand.keys import Keys, QueueName, queue_of
from errand.queue.policies import RetryPolicy, retry_policies
from errand.queue.status import JobSnapshot, snapshot_from
from errand.settings import Settings

COUNT_STATES = ("waiting", "prioritized", "active", "delayed", "completed", "failed", "paused")


class JobQueues:
    """One BullMQ `Queue` per errand queue, sharing the process's Redis pool."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.queue_prefix)
        self.policies: Mapping[QueueName, RetryPolicy] = retry_policies(settings)
        opts = {"connection": redis, "prefix": settings.queue_prefix}
        self._queues = {name: Queue(str(name), opts) for name in QueueName}

    def bullmq(self, queue: QueueName) -> Queue:
        return self._queues[queue]

    async def add(
        self,
        queue: QueueName,
        name: str,
        data: dict[str, Any],
        job_id: str,
        *,
        priority: int = 0,
        dedup_id: str | None = None,
    ) -> str:
        """Enqueue a job under its queue's policy; returns the id of the job that holds the work.

        With `dedup_id`, BullMQ keeps one job per id in flight: the id returned is the
        in-flight job's when there is one, so `!= job_id` means deduplicated.

        """
        opts: dict[str, Any] = self.policies[queue].job_options()
        opts["jobId"] = job_id
        if priority:
            opts["priority"] = priority
        if dedup_id is not None:
            opts["deduplication"] = {"id": dedup_id}
        job: Job = await self._queues[queue].add(name, data, opts)
        return str(job.id)

    async def snapshot(self, job_id: str) -> JobSnapshot:
        """Hash and state of one job, read atomically in one round trip.

        Raises NotFound for an unknown, removed or foreign id.
        """
        queue = queue_of(job_id)
        if queue is None:
            raise NotFound(f"no job with id {job_id!r}")
        keys = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.job(queue, job_id))
            pipe.zscore(keys.queue(queue, "completed"), job_id)
            pipe.zscore(keys.queue(queue, "failed"), job_id)
            pipe.zscore(keys.queue(queue, "delayed"), job_id)
            pipe.lpos(keys.queue(queue, "active"), job_id)
            pipe.hgetall(keys.webhook_state(job_id))
            pipe.llen(keys.queue(queue, "wait"))
            pipe.zcard(keys.queue(queue, "prioritized"))
            replies = await pipe.execute()
        fields, completed, failed, delayed, active_pos, webhook, waiting, prioritized = replies
        if not fields:
            raise NotFound(f"no job with id {job_id!r}")
        return snapshot_from(
            job_id, queue, fields, (completed, failed, delayed, active_pos), webhook,
            queue_depth=int(waiting) + int(prioritized),
        )

    async def counts(self, queue: QueueName) -> dict[str, int]:
        """Jobs per BullMQ state."""
        raw = await self._queues[queue].getJobCounts(*COUNT_STATES)
        return {state: int(raw.get(state, 0)) for state in COUNT_STATES}

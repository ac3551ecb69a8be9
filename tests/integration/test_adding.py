"""The add path: errand sends bullmq's own add scripts (in a MULTI with the index write), so
a job it adds is the job bullmq's Queue.add would have written; a server that forgot its
scripts (NOSCRIPT) gets them again and loses no job and no index entry."""

from __future__ import annotations

from typing import Any

import pytest

from errand.jobids import QueueName, new_job_id
from errand.queue.adding import MULTI_JOBS, JobSpec
from errand.queue.facade import JobQueues
from support.stack import Stack


async def hash_without_id(stack: Stack, queue: QueueName, job_id: str) -> dict[str, Any]:
    fields = await stack.redis.hgetall(stack.keys.job(queue, job_id))
    assert fields, job_id
    fields.pop("timestamp")
    return {name: value.replace(job_id, "<id>") for name, value in fields.items()}


@pytest.mark.parametrize(
    "extra",
    [{}, {"priority": 1}, {"delay": 60_000}, {"deduplication": {"id": "same-as-bullmq"}}],
    ids=["standard", "prioritized", "delayed", "deduplicated"],
)
async def test_a_job_added_by_errand_is_the_job_bullmq_adds(
    stack: Stack, extra: dict[str, Any]
) -> None:
    await stack.stop_workers()
    queues: JobQueues = stack.app.state.services.queues
    queue = QueueName.NOTIFICATIONS
    data = {"clientId": stack.client_id, "type": "welcome", "userId": "u-1"}
    ours, theirs = new_job_id(queue), new_job_id(queue)
    base = queues.job_options(queue, ours)
    [added] = await queues.add_many(queue, [JobSpec("welcome", data, {**base, **extra})])
    if "deduplication" in extra:  # free the dedup id for bullmq's own add
        await stack.redis.delete(stack.keys.queue(queue, "de:same-as-bullmq"))
    job = await queues.bullmq(queue).add("welcome", data, {**base, **extra, "jobId": theirs})
    assert (added, job.id) == (ours, theirs)
    assert await hash_without_id(stack, queue, ours) == await hash_without_id(stack, queue, theirs)


async def test_jobs_and_index_entries_survive_a_flushed_script_cache(stack: Stack) -> None:
    await stack.redis.script_flush()
    single = await stack.http.post("/notifications", json={"type": "welcome", "userId": "u-1"})
    await stack.redis.script_flush()
    # more than two MULTIs' worth, so the redo crosses MULTI boundaries
    items = [{"type": "welcome", "userId": f"u-{i}"} for i in range(2 * MULTI_JOBS + 3)]
    batch = await stack.http.post("/notifications/batch", json={"items": items})
    await stack.redis.script_flush()
    report = await stack.http.post("/reports", json={"userId": "u-1", "reportType": "activity"})
    created = {single.json()["jobId"], report.json()["jobId"]}
    created |= {r["jobId"] for r in batch.json()["items"]}
    assert len(created) == len(items) + 2
    listed = (await stack.http.get("/jobs?limit=100")).json()["items"]
    assert {item["jobId"] for item in listed} == created
    index = stack.keys.job_index(stack.client_id, QueueName.NOTIFICATIONS)
    assert await stack.redis.zcard(index) == len(items) + 1

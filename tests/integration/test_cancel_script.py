"""errand's cancel script against what BullMQ's own scripts leave behind for a completed job.

The script moves a job that has not started straight to BullMQ's completed set. BullMQ
must then read it as its own Worker's completion would leave it: `getState` says
completed, the counts agree, the hash has the fields moveToFinished writes, the events
stream ends with a `completed` event carrying the return value, and a report's
in-flight deduplication key is gone. A BullMQ upgrade that moves any of these fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from bullmq import Job, Worker

from errand.jobids import QueueName, new_job_id
from errand.keys import report_dedup_id
from errand.queue.cancel import CancelOutcome
from errand.queue.facade import JobQueues
from errand.queue.outcomes import Outcome, outcome_of
from errand.redisio.connection import bullmq_connection, connect
from errand.settings import Settings

NOTIFY = QueueName.NOTIFICATIONS


@pytest.fixture
async def queues(make_settings: Any) -> AsyncIterator[JobQueues]:
    settings: Settings = make_settings()
    redis = connect(settings)
    try:
        yield JobQueues(settings, redis)
    finally:
        await redis.aclose()


async def add(queues: JobQueues, **opts: Any) -> str:
    job_id = new_job_id(NOTIFY)
    data = {"clientId": "anonymous", "type": "welcome", "userId": "u"}
    await queues.add(NOTIFY, "welcome", data, job_id, **opts)
    return job_id


async def last_event(queues: JobQueues, queue: QueueName) -> dict[str, str]:
    [(_, fields)] = await queues.redis.xrevrange(queues.keys.events(queue), count=1)
    return {_text(k): _text(v) for k, v in fields.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def completed_by_bullmq(queues: JobQueues) -> str:
    """A job completed by bullmq's own Worker (and so by its moveToFinished script)."""
    job_id = await add(queues)
    done = asyncio.Event()

    async def process(job: Job, token: str) -> dict[str, Any]:
        return {"sent": True}

    opts = {
        "connection": bullmq_connection(queues.settings),
        "prefix": queues.settings.queue_prefix,
    }
    worker = Worker(str(NOTIFY), process, opts)
    worker.on("completed", lambda *_: done.set())
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await worker.close()
    return job_id


async def test_canceled_job_is_where_bullmq_puts_a_completed_job(queues: JobQueues) -> None:
    reference = await completed_by_bullmq(queues)
    job_id = await add(queues)
    assert await queues.cancel(NOTIFY, job_id) is CancelOutcome.CANCELED
    bull = queues.bullmq(NOTIFY)
    assert await bull.getJobState(job_id) == "completed"
    counts = await queues.counts(NOTIFY)
    assert (counts["completed"], counts["waiting"], counts["prioritized"]) == (2, 0, 0)
    completed_ids = [j.id for j in await bull.getJobs(["completed"])]
    assert set(completed_ids) == {reference, job_id}
    job = await Job.fromId(bull, job_id)
    ours = outcome_of(job.returnvalue)
    assert ours is not None and ours[0] is Outcome.CANCELED
    assert job.finishedOn > 0 and job.attemptsMade == 0
    hash_of = queues.keys.job(NOTIFY, reference)
    theirs = set(await queues.redis.hkeys(hash_of))
    mine = set(await queues.redis.hkeys(queues.keys.job(NOTIFY, job_id)))
    # What moveToFinished writes for a completion, less what only a run leaves (a start
    # time, attempt counters): the rest of the hash is the job as added, in both.
    assert mine >= {"returnvalue", "finishedOn"}
    assert theirs - mine <= {"processedOn", "atm", "ats", "pb"}
    event = await last_event(queues, NOTIFY)
    assert event["event"] == "completed" and event["jobId"] == job_id
    assert orjson.loads(event["returnvalue"]) == job.returnvalue
    assert event["prev"] == "waiting"


@pytest.mark.parametrize(
    ("opts", "prev", "state_set"),
    [({"priority": 1}, "prioritized", "prioritized"), ({"delay_ms": 60_000}, "delayed", "delayed")],
)
async def test_prioritized_and_delayed_jobs_are_taken_from_their_sets(
    queues: JobQueues, opts: dict[str, Any], prev: str, state_set: str
) -> None:
    job_id = await add(queues, **opts)
    assert await queues.bullmq(NOTIFY).getJobState(job_id) == state_set
    assert await queues.cancel(NOTIFY, job_id) is CancelOutcome.CANCELED
    assert await queues.bullmq(NOTIFY).getJobState(job_id) == "completed"
    assert await queues.redis.zcard(queues.keys.queue(NOTIFY, state_set)) == 0
    assert (await last_event(queues, NOTIFY))["prev"] == prev
    assert await queues.cancel(NOTIFY, job_id) is CancelOutcome.FINAL


async def test_report_cancel_deletes_its_own_dedup_key_only(queues: JobQueues) -> None:
    dedup = report_dedup_id("anonymous", "u", "activity")
    dedup_key = queues.keys.queue(QueueName.REPORTS, f"de:{dedup}")
    data = {"clientId": "anonymous", "userId": "u", "reportType": "activity"}
    first = new_job_id(QueueName.REPORTS)
    await queues.add(QueueName.REPORTS, "report", data, first, dedup_id=dedup)
    assert await queues.redis.get(dedup_key) == first
    assert await queues.cancel(QueueName.REPORTS, first) is CancelOutcome.CANCELED
    assert await queues.redis.exists(dedup_key) == 0
    second = new_job_id(QueueName.REPORTS)
    assert await queues.add(QueueName.REPORTS, "report", data, second, dedup_id=dedup) == second
    await queues.redis.set(dedup_key, "rep_someone_else")
    third = new_job_id(QueueName.REPORTS)
    await queues.redis.rpush(queues.keys.queue(QueueName.REPORTS, "wait"), third)
    await queues.redis.hset(queues.keys.job(QueueName.REPORTS, third), mapping={"deid": dedup})
    assert await queues.cancel(QueueName.REPORTS, third) is CancelOutcome.CANCELED
    assert await queues.redis.get(dedup_key) == "rep_someone_else"


async def test_active_jobs_are_not_moved(queues: JobQueues) -> None:
    job_id = await add(queues)
    active = queues.keys.queue(NOTIFY, "active")
    await queues.redis.lmove(queues.keys.queue(NOTIFY, "wait"), active, "RIGHT", "LEFT")
    assert await queues.cancel(NOTIFY, job_id) is CancelOutcome.ACTIVE
    assert await queues.redis.lrange(active, 0, -1) == [job_id]
    assert not await queues.redis.exists(queues.keys.cancel_request(job_id))
    report = new_job_id(QueueName.REPORTS)
    await queues.redis.hset(queues.keys.job(QueueName.REPORTS, report), mapping={"name": "report"})
    await queues.redis.rpush(queues.keys.queue(QueueName.REPORTS, "active"), report)
    assert await queues.cancel(QueueName.REPORTS, report) is CancelOutcome.REQUESTED
    assert await queues.redis.exists(queues.keys.cancel_request(report))
    assert (await queues.counts(QueueName.REPORTS))["active"] == 1


async def test_a_notification_whose_email_is_going_out_is_not_canceled(queues: JobQueues) -> None:
    """A redelivered copy waits while the first worker still sends (claim) or has sent
    (ledger): canceling it would promise an email that is not stopped."""
    for key_of in (queues.keys.send_claim, queues.keys.sent_ledger):
        job_id = await add(queues)
        await queues.redis.set(key_of(job_id), "1")
        assert await queues.cancel(NOTIFY, job_id) is CancelOutcome.SENDING
        assert await queues.bullmq(NOTIFY).getJobState(job_id) == "waiting"

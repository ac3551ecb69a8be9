"""Enqueueing the two products' jobs: reports (deduplicated in flight) and notifications."""

from __future__ import annotations

from dataclasses import dataclass

from errand.errors import NotFound, QueueUnavailable
from errand.keys import QueueName, new_job_id, report_dedup_id
from errand.queue.facade import JobQueues
from errand.queue.policies import NOTIFICATION_PRIORITIES
from errand.queue.snapshot import JobStatus


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    status: JobStatus
    deduplicated: bool = False


async def enqueue_report(
    queues: JobQueues, client_id: str, user_id: str, report_type: str, webhook_url: str | None
) -> Enqueued:
    """Create a report job, or return the one already in flight for this user and type.

    BullMQ's deduplication key lives exactly as long as the job is waiting, delayed
    or active (it is deleted when the job completes or fails for good), and the
    check-and-add is one Lua script, so concurrent POSTs create one job.
    """
    data = report_data(client_id, user_id, report_type, webhook_url)
    dedup_id = report_dedup_id(client_id, user_id, report_type)
    for _ in range(3):
        fresh_id = new_job_id(QueueName.REPORTS)
        job_id = await queues.add(QueueName.REPORTS, "report", data, fresh_id, dedup_id=dedup_id)
        if job_id == fresh_id:
            return Enqueued(job_id, JobStatus.WAITING)
        try:
            snapshot = await queues.snapshot(job_id)
        except NotFound:
            continue  # the in-flight job finished and was removed in between: add again
        return Enqueued(job_id, snapshot.status, deduplicated=True)
    raise QueueUnavailable("the in-flight report kept vanishing; try again")


async def enqueue_notification(
    queues: JobQueues, client_id: str, kind: str, user_id: str, webhook_url: str | None
) -> Enqueued:
    """Create a notification job with its type's priority."""
    data = notification_data(client_id, kind, user_id, webhook_url)
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    await queues.add(
        QueueName.NOTIFICATIONS, kind, data, job_id, priority=NOTIFICATION_PRIORITIES[kind]
    )
    return Enqueued(job_id, JobStatus.WAITING)


def report_data(
    client_id: str, user_id: str, report_type: str, webhook_url: str | None
) -> dict[str, str]:
    """A report job's BullMQ data (also the template of a schedule's runs)."""
    data = {"clientId": client_id, "userId": user_id, "reportType": report_type}
    if webhook_url:
        data["webhookUrl"] = webhook_url
    return data


def notification_data(
    client_id: str, kind: str, user_id: str, webhook_url: str | None
) -> dict[str, str]:
    """A notification job's BullMQ data (also the template of a schedule's runs)."""
    data = {"clientId": client_id, "type": kind, "userId": user_id}
    if webhook_url:
        data["webhookUrl"] = webhook_url
    return data

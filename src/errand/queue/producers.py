"""Enqueueing the two products' jobs: reports (deduplicated in flight) and notifications."""

from __future__ import annotations

from dataclasses import dataclass

from errand.clock import iso_ms, now_ms
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
    data: dict[str, str] = {"clientId": client_id, "userId": user_id, "reportType": report_type}
    if webhook_url:
        data["webhookUrl"] = webhook_url
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


@dataclass(frozen=True, slots=True)
class Timing:
    """When a notification is due (`send_at_ms`) and after when it must not go out."""

    send_at_ms: int = 0
    expires_at_ms: int = 0


async def enqueue_notification(
    queues: JobQueues,
    client_id: str,
    kind: str,
    user_id: str,
    webhook_url: str | None,
    timing: Timing = Timing(),
) -> Enqueued:
    """Create a notification job with its type's priority.

    A future `send_at_ms` makes it a BullMQ delayed job (`scheduled` until due); both
    times are kept in the job data (ISO 8601 UTC), where the processor checks expiry.
    """
    data: dict[str, str] = {"clientId": client_id, "type": kind, "userId": user_id}
    if webhook_url:
        data["webhookUrl"] = webhook_url
    for name, epoch_ms in (("sendAt", timing.send_at_ms), ("expiresAt", timing.expires_at_ms)):
        if epoch_ms:
            data[name] = iso_ms(epoch_ms) or ""
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    delay_ms = timing.send_at_ms - now_ms() if timing.send_at_ms else 0
    await queues.add(
        QueueName.NOTIFICATIONS,
        kind,
        data,
        job_id,
        priority=NOTIFICATION_PRIORITIES[kind],
        delay_ms=delay_ms,
    )
    return Enqueued(job_id, JobStatus.SCHEDULED if delay_ms > 0 else JobStatus.WAITING)

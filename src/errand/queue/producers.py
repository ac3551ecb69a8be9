"""Enqueueing the two products' jobs: reports (deduplicated in flight) and notifications."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from errand.clock import iso_ms, now_ms
from errand.errors import NotFound, QueueUnavailable
from errand.jobids import QueueName, new_job_id
from errand.keys import report_dedup_id
from errand.queue.adding import JobSpec
from errand.queue.facade import JobQueues
from errand.queue.policies import NOTIFICATION_PRIORITIES
from errand.statuses import JobStatus


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
    partition = queues.partition_for(client_id, user_id)  # the dedup key's slot, too
    for _ in range(3):
        fresh_id = new_job_id(QueueName.REPORTS, partition)
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
    note = NewNotification(kind, user_id, webhook_url, timing)
    (job_id,) = await enqueue_notifications(queues, client_id, [note])
    return Enqueued(job_id, JobStatus.SCHEDULED if note.delay_ms() > 0 else JobStatus.WAITING)


@dataclass(frozen=True, slots=True)
class NewNotification:
    """One notification to create: its type, recipient, optional webhook and timing."""

    kind: str
    user_id: str
    webhook_url: str | None = None
    timing: Timing = Timing()

    def delay_ms(self) -> int:
        """How long BullMQ keeps it delayed: until `sendAt`, if that is still ahead."""
        return max(0, self.timing.send_at_ms - now_ms()) if self.timing.send_at_ms else 0

    def data(self, client_id: str) -> dict[str, str]:
        """The BullMQ job data: owner, type, recipient, webhook and its times."""
        data = {"clientId": client_id, "type": self.kind, "userId": self.user_id}
        if self.webhook_url:
            data["webhookUrl"] = self.webhook_url
        for name, epoch_ms in (
            ("sendAt", self.timing.send_at_ms),
            ("expiresAt", self.timing.expires_at_ms),
        ):
            if epoch_ms:
                data[name] = iso_ms(epoch_ms) or ""
        return data


async def enqueue_notifications(
    queues: JobQueues, client_id: str, notes: Sequence[NewNotification]
) -> list[str]:
    """Create notification jobs (and their index entries) in one round trip; their ids."""
    return await queues.add_many(
        QueueName.NOTIFICATIONS, notification_specs(queues, client_id, notes)
    )


def notification_specs(
    queues: JobQueues, client_id: str, notes: Sequence[NewNotification]
) -> list[JobSpec]:
    """The BullMQ jobs of `notes`, each with its type's priority, in its partition."""
    specs = []
    for note in notes:
        opts = queues.job_options(
            QueueName.NOTIFICATIONS,
            new_job_id(QueueName.NOTIFICATIONS, queues.partition_for(client_id, note.user_id)),
            priority=NOTIFICATION_PRIORITIES[note.kind],
            delay_ms=note.delay_ms(),
        )
        specs.append(JobSpec(note.kind, note.data(client_id), opts))
    return specs


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
    return NewNotification(kind, user_id, webhook_url).data(client_id)

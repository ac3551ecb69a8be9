"""Webhook events: which final outcome becomes which event, its deterministic ids and its payload.

One event is emitted per final outcome of a job per "round" (a round is the run
from the first attempt to completion or dead-lettering; a DLQ retry starts a new
round). Its delivery job id and its `webhook-id` are derived from
(source job id, event type, round), so a worker that emits the same event twice
(a job redelivered after a crash between the emit and BullMQ's acknowledgement)
adds the same delivery job twice, which BullMQ ignores.
"""

from __future__ import annotations

import dataclasses
import hashlib
from enum import StrEnum
from typing import Any

from errand.clock import iso_ms
from errand.jobids import QueueName, job_id_of, partition_of
from errand.queue.snapshot import JobSnapshot
from errand.queue.views import job_view, notification_view
from errand.statuses import JobStatus

WEBHOOK_ID_PREFIX = "msg_"


class EventType(StrEnum):
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"
    NOTIFICATION_CANCELED = "notification.canceled"
    NOTIFICATION_EXPIRED = "notification.expired"
    REPORT_COMPLETED = "report.completed"
    REPORT_FAILED = "report.failed"
    REPORT_CANCELED = "report.canceled"


_EVENTS: dict[tuple[QueueName, JobStatus], EventType] = {
    (QueueName.NOTIFICATIONS, JobStatus.COMPLETED): EventType.NOTIFICATION_SENT,
    (QueueName.NOTIFICATIONS, JobStatus.FAILED): EventType.NOTIFICATION_FAILED,
    (QueueName.NOTIFICATIONS, JobStatus.CANCELED): EventType.NOTIFICATION_CANCELED,
    (QueueName.NOTIFICATIONS, JobStatus.EXPIRED): EventType.NOTIFICATION_EXPIRED,
    (QueueName.REPORTS, JobStatus.COMPLETED): EventType.REPORT_COMPLETED,
    (QueueName.REPORTS, JobStatus.FAILED): EventType.REPORT_FAILED,
    (QueueName.REPORTS, JobStatus.CANCELED): EventType.REPORT_CANCELED,
}

# Fields of the job views that describe the webhook itself or a retry still to come.
_OMITTED_FIELDS = ("webhook", "nextAttemptAt")


def event_type_for(queue: QueueName, status: JobStatus) -> EventType | None:
    """The event a job of `queue` emits on reaching the final `status`; None when there is
    none (the webhooks queue, or a status that is not final)."""
    return _EVENTS.get((queue, status))


def _event_digest(source_job_id: str, event: EventType, round_no: int) -> str:
    return hashlib.sha256(f"{source_job_id}|{event}|{round_no}".encode()).hexdigest()[:32]


def delivery_job_id(source_job_id: str, event: EventType, round_no: int) -> str:
    """The id of the delivery job of one event, the same every time: `whk_<32 hex>`, in
    the partition of its source job (`whk_<p>_<32 hex>`), whose webhook state it writes."""
    digest = _event_digest(source_job_id, event, round_no)
    return job_id_of(QueueName.WEBHOOKS, digest, partition_of(source_job_id))


def webhook_id_for(delivery_id: str) -> str:
    """The `webhook-id` header of an event: `msg_<32 hex>`, shared by all its attempts."""
    return WEBHOOK_ID_PREFIX + delivery_id.rpartition("_")[2]


def final_snapshot(
    active: JobSnapshot, finished_ms: int, error: str | None, status: JobStatus | None = None
) -> JobSnapshot:
    """The job as it will look once BullMQ records the outcome the processor just reached.

    `active` is read while the job is still active, so this is the one place that
    predicts the final fields: one more attempt made, finished now, and either
    completed (progress 100), failed with `error`, or the given final `status`
    (canceled or expired, with `error` saying why).
    """
    completed = error is None
    if status is None:
        status = JobStatus.COMPLETED if completed else JobStatus.FAILED
    return dataclasses.replace(
        active,
        status=status,
        progress=100 if status is JobStatus.COMPLETED else active.progress,
        attempts_made=active.attempts_made + 1,
        finished_ms=finished_ms,
        next_attempt_ms=0,
        failed_reason=error,
        webhook={},
    )


def event_payload(event: EventType, snap: JobSnapshot, timestamp_ms: int) -> dict[str, Any]:
    """`{type, timestamp, data}` where data holds the job's public fields, as the API shows them."""
    if snap.queue is QueueName.NOTIFICATIONS:
        data = notification_view(snap)
        data["queue"] = str(snap.queue)
    else:
        data = job_view(snap)
        data["userId"] = str(snap.data.get("userId", ""))
        data["reportType"] = str(snap.data.get("reportType", ""))
    for name in _OMITTED_FIELDS:
        data.pop(name, None)
    return {"type": str(event), "timestamp": iso_ms(timestamp_ms), "data": data}

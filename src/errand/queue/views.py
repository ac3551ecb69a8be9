"""Public JSON views of job snapshots: what GET /jobs and GET /notifications return, and
what a webhook event carries (domain read models, below both the API and webhooks)."""

from __future__ import annotations

from typing import Any

from errand.clock import iso_ms
from errand.errors import without_addresses
from errand.jobids import QueueName
from errand.queue.snapshot import JobSnapshot
from errand.statuses import JobStatus


def job_view(snap: JobSnapshot) -> dict[str, Any]:
    """The `GET /jobs/{id}` body: every field from one atomic snapshot."""
    completed = snap.status is JobStatus.COMPLETED
    return {
        "jobId": snap.job_id,
        "queue": str(snap.queue),
        "userId": user_id(snap),
        "type": job_type(snap),
        "scheduleId": snap.schedule_id,
        "status": str(snap.status),
        "progress": snap.progress,
        "attemptsMade": snap.attempts_made,
        "createdAt": iso_ms(snap.created_ms),
        "startedAt": iso_ms(snap.started_ms),
        "finishedAt": iso_ms(snap.finished_ms),
        "nextAttemptAt": iso_ms(snap.next_attempt_ms) if not snap.is_final else None,
        "scheduledFor": scheduled_for(snap),
        "cancelRequested": snap.cancel_requested,
        "deadLettered": snap.dead_lettered,
        "resultUrl": f"/reports/{snap.job_id}/result"
        if completed and snap.queue is QueueName.REPORTS
        else None,
        "error": public_error(snap.error),
        "webhook": webhook_view(snap),
    }


def notification_view(snap: JobSnapshot) -> dict[str, Any]:
    """The `GET /notifications/{id}` body."""
    return {
        "jobId": snap.job_id,
        "type": job_type(snap),
        "userId": user_id(snap),
        "scheduleId": snap.schedule_id,
        "priority": snap.priority,
        "status": str(snap.status),
        "attemptsMade": snap.attempts_made,
        "deadLettered": snap.dead_lettered,
        "error": public_error(snap.error),
        "createdAt": iso_ms(snap.created_ms),
        "startedAt": iso_ms(snap.started_ms),
        "finishedAt": iso_ms(snap.finished_ms),
        "nextAttemptAt": iso_ms(snap.next_attempt_ms) if not snap.is_final else None,
        "sendAt": snap.data.get("sendAt"),
        "expiresAt": snap.data.get("expiresAt"),
        "scheduledFor": scheduled_for(snap),
        "cancelRequested": snap.cancel_requested,
        "webhook": webhook_view(snap),
    }


def scheduled_for(snap: JobSnapshot) -> str | None:
    """When a scheduled job is due (its `sendAt`, in UTC); None once it is due."""
    if snap.status is not JobStatus.SCHEDULED:
        return None
    send_at = snap.data.get("sendAt")
    return str(send_at) if send_at else iso_ms(snap.scheduled_ms)


def webhook_view(snap: JobSnapshot) -> dict[str, Any] | None:
    """The job's webhook delivery state, or None when it has no webhookUrl."""
    url = snap.data.get("webhookUrl")
    if not url:
        return None
    state = snap.webhook
    code = state.get("lastStatusCode")
    return {
        "url": url,
        "status": state.get("status", "pending"),
        "attempts": int(state.get("attempts", 0)),
        "lastStatusCode": int(code) if code else None,
        "lastError": public_error(state.get("lastError")),
        "deliveredAt": state.get("deliveredAt") or None,
    }


def user_id(snap: JobSnapshot) -> str:
    """The job's recipient or report subject, always shown as a string."""
    return str(snap.data.get("userId", ""))


def job_type(snap: JobSnapshot) -> str:
    """A notification's type or a report's `reportType` (the job name for anything else)."""
    data = snap.data
    return str(data.get("type") or data.get("reportType") or snap.name)


def public_error(reason: str | None) -> str | None:
    """A failure reason as clients see it: no internal address (the mail server's, Redis's)."""
    return without_addresses(reason) if reason else None

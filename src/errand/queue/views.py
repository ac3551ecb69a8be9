"""Public JSON views of job snapshots: what GET /jobs and GET /notifications return, and
what a webhook event carries (domain read models, below both the API and webhooks)."""

from __future__ import annotations

from typing import Any

from errand.clock import iso_ms
from errand.keys import QueueName
from errand.queue.snapshot import JobSnapshot, JobStatus


def job_view(snap: JobSnapshot) -> dict[str, Any]:
    """The `GET /jobs/{id}` body: every field from one atomic snapshot."""
    completed = snap.status is JobStatus.COMPLETED
    failed = snap.status is JobStatus.FAILED
    return {
        "jobId": snap.job_id,
        "queue": str(snap.queue),
        "status": str(snap.status),
        "progress": snap.progress,
        "attemptsMade": snap.attempts_made,
        "createdAt": iso_ms(snap.created_ms),
        "startedAt": iso_ms(snap.started_ms),
        "finishedAt": iso_ms(snap.finished_ms),
        "nextAttemptAt": iso_ms(snap.next_attempt_ms) if not snap.is_final else None,
        "deadLettered": snap.dead_lettered,
        "resultUrl": f"/reports/{snap.job_id}/result"
        if completed and snap.queue is QueueName.REPORTS
        else None,
        "error": snap.failed_reason if failed else None,
        "webhook": webhook_view(snap),
        "scheduleId": snap.schedule_id,
    }


def notification_view(snap: JobSnapshot) -> dict[str, Any]:
    """The `GET /notifications/{id}` body."""
    return {
        "jobId": snap.job_id,
        "type": str(snap.data.get("type", snap.name)),
        "userId": str(snap.data.get("userId", "")),
        "priority": snap.priority,
        "status": str(snap.status),
        "attemptsMade": snap.attempts_made,
        "deadLettered": snap.dead_lettered,
        "error": snap.failed_reason if snap.status is JobStatus.FAILED else None,
        "createdAt": iso_ms(snap.created_ms),
        "startedAt": iso_ms(snap.started_ms),
        "finishedAt": iso_ms(snap.finished_ms),
        "nextAttemptAt": iso_ms(snap.next_attempt_ms) if not snap.is_final else None,
        "webhook": webhook_view(snap),
        "scheduleId": snap.schedule_id,
    }


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
        "lastError": state.get("lastError") or None,
        "deliveredAt": state.get("deliveredAt") or None,
    }

"""Public JSON views of job snapshots (what GET /jobs and GET /notifications return)."""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import Response

from errand.api.http.responses import json_response
from errand.clock import iso_ms, now_ms
from errand.keys import QueueName
from errand.queue.snapshot import JobSnapshot, JobStatus
from errand.settings import Settings

RETRY_AFTER_CAP_S = 30


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
    }


def accepted(
    settings: Settings, queue: QueueName, status_url: str, content: dict[str, Any]
) -> Response:
    """A `202 Accepted` for a queued job: Location of its status and a first polling hint."""
    headers = {"Location": status_url, "Retry-After": str(retry_after_s(settings, queue))}
    return json_response(content, 202, headers)


def retry_after_s(settings: Settings, queue: QueueName, snap: JobSnapshot | None = None) -> int:
    """A polling hint in whole seconds: the job type's typical run time, scaled by the
    jobs ahead of it when it waits, shortened by its progress when it runs, and never
    before its next retry is due. Capped so a client never waits blind for long."""
    typical_s, concurrency = _typical(settings, queue)
    estimate = typical_s
    if snap is not None:
        if snap.status is JobStatus.ACTIVE:
            estimate = typical_s * (100 - snap.progress) / 100
        elif snap.status is JobStatus.WAITING and snap.queue_depth:
            estimate = typical_s * math.ceil((snap.queue_depth + 1) / concurrency)
        if snap.next_attempt_ms:
            estimate = max(estimate, (snap.next_attempt_ms - now_ms()) / 1000)
    return max(1, min(RETRY_AFTER_CAP_S, math.ceil(estimate)))


def _typical(settings: Settings, queue: QueueName) -> tuple[float, int]:
    """(typical run time in s, jobs one worker process runs at once) for a queue."""
    if queue is QueueName.REPORTS:
        return settings.report_seconds, settings.report_concurrency
    if queue is QueueName.NOTIFICATIONS:
        return settings.email_send_ms / 1000, settings.notify_concurrency
    return 1.0, settings.webhook_concurrency


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

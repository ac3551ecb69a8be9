"""HTTP polling hints: the 202 Accepted of a queued job and the Retry-After of a status."""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import Response

from errand.api.deps import Services
from errand.api.http.responses import json_response
from errand.clock import now_ms
from errand.errors import QueueFull
from errand.jobids import QueueName
from errand.queue.snapshot import JobSnapshot
from errand.settings import Settings
from errand.statuses import JobStatus

RETRY_AFTER_CAP_S = 30


def accepted(
    settings: Settings, queue: QueueName, status_url: str, content: dict[str, Any]
) -> Response:
    """A `202 Accepted` for a queued job: Location of its status and a first polling hint."""
    headers = {"Location": status_url, "Retry-After": str(retry_after_s(settings, queue))}
    return json_response(content, 202, headers)


async def check_room(svc: Services, queue: QueueName) -> None:
    """Raises QueueFull (503) when one more job would put `queue` over ERRAND_MAX_QUEUE_DEPTH."""
    if await svc.gate.limits.queue_full(queue):
        raise QueueFull(
            f"the {queue} queue holds {svc.settings.max_queue_depth} jobs waiting or "
            "scheduled, its limit; try again shortly"
        )


def status_response(settings: Settings, snap: JobSnapshot, view: dict[str, Any]) -> Response:
    """A job's status `view`, with a Retry-After polling hint while the job is not final."""
    headers = None
    if not snap.is_final:
        headers = {"Retry-After": str(retry_after_s(settings, snap.queue, snap))}
    return json_response(view, 200, headers)


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
        due_ms = snap.next_attempt_ms or snap.scheduled_ms
        if due_ms:
            estimate = max(estimate, (due_ms - now_ms()) / 1000)
    return max(1, min(RETRY_AFTER_CAP_S, math.ceil(estimate)))


def _typical(settings: Settings, queue: QueueName) -> tuple[float, int]:
    """(typical run time in s, jobs one worker process runs at once) for a queue."""
    if queue is QueueName.REPORTS:
        return settings.report_seconds, settings.report_concurrency
    if queue is QueueName.NOTIFICATIONS:
        return settings.email_send_ms / 1000, settings.notify_concurrency
    return 1.0, settings.webhook_concurrency

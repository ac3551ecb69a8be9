"""POST /notifications, GET /notifications/{jobId} (with `?wait=`) and its /events stream."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.api.caller import Caller, CallerDep, current_caller
from errand.api.deps import Services, ServicesDep, services
from errand.api.gate import ClientRoute
from errand.api.http.body import read_json_object, validate_body
from errand.api.idempotency import idempotent
from errand.api.polling import accepted, check_room, status_response
from errand.api.routes._openapi import accepted_job, event_stream, job_status, json_body
from errand.api.schemas import NotificationAccepted, NotificationCreate, NotificationPublic
from errand.api.waiting import WaitSeconds, long_poll, sse_response
from errand.errors import NotFound, RecipientLimited
from errand.jobids import QueueName, queue_of
from errand.queue.producers import enqueue_notification
from errand.queue.views import notification_view
from errand.webhooks.ssrf import check_webhook_destination

router = APIRouter(tags=["notifications"], route_class=ClientRoute)


@router.post(
    "/notifications",
    status_code=202,
    openapi_extra=json_body(NotificationCreate, idempotent=True),
    responses=accepted_job(
        NotificationAccepted, "/notifications/{jobId}: the notification's status."
    ),
)
async def create_notification(
    request: Request, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Queue an email; password-reset jumps the queue (priority 1, the others 5)."""
    body = await read_json_object(request, svc.settings.max_body_bytes)
    return await idempotent(
        request, svc, caller, "notifications", body, lambda: accept(svc, caller, body)
    )


async def accept(svc: Services, caller: Caller, body: dict[str, Any]) -> Response:
    """The 202 for a valid notification body, once it is queued (also the hot path's handler)."""
    note = validate_body(NotificationCreate, body)
    await check_webhook_destination(
        note.webhookUrl, allow_private=svc.settings.webhook_allow_private
    )
    await check_room(svc, QueueName.NOTIFICATIONS)
    await count_recipient(svc, caller, note.userId)
    enqueued = await enqueue_notification(
        svc.queues, caller.client_id, note.type, note.userId, note.webhookUrl, note.timing()
    )
    status_url = f"/notifications/{enqueued.job_id}"
    content = {"jobId": enqueued.job_id, "statusUrl": status_url, "status": str(enqueued.status)}
    return accepted(svc.settings, QueueName.NOTIFICATIONS, status_url, content)


async def count_recipient(svc: Services, caller: Caller, user_id: str) -> None:
    """Count one notification for `user_id` against the caller's hourly cap.

    Raises RecipientLimited (429) when the cap is reached; nothing is counted then.
    """
    cap = caller.notify_per_user_per_hour
    wait_s = await svc.gate.limits.admit_recipient(caller.client_id, user_id, cap)
    if wait_s:
        raise recipient_limited(cap, wait_s)


def recipient_limited(cap: int, wait_s: int) -> RecipientLimited:
    """The 429 of a notification over its recipient's cap."""
    return RecipientLimited(
        f"at most {cap} notifications for one user in any 60 minutes; "
        f"this user can get another in {wait_s} s",
        wait_s,
    )


@router.get("/notifications/{job_id}", responses=job_status(NotificationPublic))
async def get_notification(
    request: Request, job_id: str, svc: ServicesDep, caller: CallerDep, wait: WaitSeconds = None
) -> Response:
    """A notification's status, attempts, dead-letter flag and webhook delivery; with
    `?wait=N` a long-poll that answers as soon as it is final."""
    if wait is None:
        return await status(svc, caller, job_id)
    job_id = notification_id(job_id)
    return await long_poll(request, svc, caller, job_id, wait, notification_view)


@router.get("/notifications/{job_id}/events", **event_stream(NotificationPublic))
async def notification_events(
    job_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Server-Sent Events of the notification view, as GET /jobs/{job_id}/events."""
    return await sse_response(svc, caller, notification_id(job_id), notification_view)


def notification_id(job_id: str) -> str:
    """`job_id` if it names a notification. Raises NotFound for any other id."""
    if queue_of(job_id) is not QueueName.NOTIFICATIONS:
        raise NotFound(f"no notification with id {job_id!r}")
    return job_id


async def status(svc: Services, caller: Caller, job_id: str) -> Response:
    """The GET /notifications/{job_id} answer (also the hot path's handler)."""
    snap = await svc.queues.snapshot(notification_id(job_id), caller.client_id)
    return status_response(svc.settings, snap, notification_view(snap))

"""POST /reports and GET /reports/{jobId}/result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.api.caller import Caller, current_caller
from errand.api.deps import Services, services
from errand.api.gate import ClientRoute
from errand.api.http.body import read_json_object, validate_body
from errand.api.idempotency import idempotent
from errand.api.polling import accepted, check_room
from errand.api.routes._openapi import accepted_job, json_body, problems
from errand.api.schemas import ReportAccepted, ReportCreate, ReportResult
from errand.errors import Conflict, NotFound
from errand.jobids import QueueName, queue_of
from errand.queue.producers import enqueue_report
from errand.statuses import JobStatus
from errand.webhooks.ssrf import check_webhook_destination

router = APIRouter(tags=["reports"], route_class=ClientRoute)


@router.post(
    "/reports",
    status_code=202,
    openapi_extra=json_body(ReportCreate, idempotent=True),
    responses=accepted_job(ReportAccepted, "/jobs/{jobId}: the job's status."),
)
async def create_report(
    request: Request, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Queue a report; the same user and report type in flight is deduplicated."""
    body = await read_json_object(request, svc.settings.max_body_bytes)
    return await idempotent(
        request, svc, caller, "reports", body, lambda: accept(svc, caller, body)
    )


async def accept(svc: Services, caller: Caller, body: dict[str, Any]) -> Response:
    """The 202 for a valid report body, once queued or matched to the one in flight
    (also the hot path's handler)."""
    report = validate_body(ReportCreate, body)
    await check_webhook_destination(
        report.webhookUrl, allow_private=svc.settings.webhook_allow_private
    )
    await check_room(svc, QueueName.REPORTS)
    enqueued = await enqueue_report(
        svc.queues, caller.client_id, report.userId, report.reportType, report.webhookUrl
    )
    status_url = f"/jobs/{enqueued.job_id}"
    content = {
        "jobId": enqueued.job_id,
        "statusUrl": status_url,
        "status": str(enqueued.status),
        "deduplicated": enqueued.deduplicated,
    }
    return accepted(svc.settings, QueueName.REPORTS, status_url, content)


@router.get("/reports/{job_id}/result", response_model=ReportResult, responses=problems(409))
async def get_report_result(
    job_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """The generated report once completed; 409 while it is not; 404 if unknown or expired.

    The result is kept under its owner's id, so another client's lookup misses it and
    then finds no job of its own either: the same 404 as an unknown id."""
    if queue_of(job_id) is not QueueName.REPORTS:
        raise NotFound(f"no report with id {job_id!r}")
    raw = await svc.redis.get(svc.queues.keys.report_result(caller.client_id, job_id))
    if raw is not None:
        return Response(raw, 200, media_type="application/json")
    snap = await svc.queues.snapshot(job_id, caller.client_id)
    if snap.status is JobStatus.COMPLETED:
        raise NotFound(f"the result of report {job_id!r} has expired")
    raise Conflict(f"report {job_id!r} is {snap.status}, not completed", job_status=snap.status)

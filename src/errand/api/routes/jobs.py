"""GET /jobs/{jobId} (any job's status, whatever its queue) and POST /jobs/{jobId}/cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.api.caller import Caller, CallerDep, current_caller
from errand.api.cancel import cancel_job
from errand.api.deps import Services, ServicesDep, services
from errand.api.gate import ClientRoute
from errand.api.http.responses import json_response
from errand.api.polling import retry_after_s, status_response
from errand.api.routes._openapi import canceled_job, event_stream, job_status
from errand.api.schemas import JobPublic
from errand.api.waiting import WaitSeconds, long_poll, sse_response
from errand.queue.snapshot import JobSnapshot
from errand.queue.views import job_view

router = APIRouter(tags=["jobs"], route_class=ClientRoute)


def job_response(svc: Services, snap: JobSnapshot) -> Response:
    """The GET /jobs/{job_id} answer for `snap` (also the hot path's)."""
    return status_response(svc.settings, snap, job_view(snap))


@router.get("/jobs/{job_id}", responses=job_status(JobPublic))
async def get_job(
    request: Request, job_id: str, svc: ServicesDep, caller: CallerDep, wait: WaitSeconds = None
) -> Response:
    """The job's status; with `?wait=N` a long-poll that answers as soon as it is final."""
    if wait is None:
        return job_response(svc, await svc.queues.snapshot(job_id, caller.client_id))
    return await long_poll(request, svc, caller, job_id, wait, job_view)


@router.get("/jobs/{job_id}/events", **event_stream(JobPublic))
async def job_events(
    job_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Server-Sent Events: a `status` event now and on every change; ends after the final one.

    A reconnecting client (Last-Event-ID) first gets the job as it is now, so it misses
    no state: each event carries the whole job view, not a delta.
    """
    return await sse_response(svc, caller, job_id, job_view)


@router.post(
    "/jobs/{job_id}/cancel",
    responses=canceled_job(JobPublic),
)
async def cancel(
    job_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Cancel a scheduled or waiting job (200, now `canceled`), or ask an active report to
    stop at its next progress step (202, still `active` with `cancelRequested`). An active
    notification or a final job: 409 with `jobStatus`. A body, if any, is ignored."""
    snap, canceled = await cancel_job(svc, caller, job_id)
    if canceled or snap.is_final:
        return json_response(job_view(snap), 200)
    headers = {"Retry-After": str(retry_after_s(svc.settings, snap.queue, snap))}
    return json_response(job_view(snap), 202, headers)

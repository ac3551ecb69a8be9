"""GET /jobs/{jobId} (any job's status, whatever its queue) and POST /jobs/{jobId}/cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.api.caller import Caller, current_caller
from errand.api.cancel import cancel_job
from errand.api.deps import Services, services
from errand.api.gate import ClientRoute
from errand.api.http.responses import json_response
from errand.api.polling import retry_after_s, status_response
from errand.api.routes._openapi import problems
from errand.api.schemas import JobPublic
from errand.api.waiting import SSE_RESPONSES, WaitSeconds, event_stream, long_poll
from errand.queue.snapshot import JobSnapshot
from errand.queue.views import job_view

router = APIRouter(tags=["jobs"], route_class=ClientRoute)


def job_response(svc: Services, snap: JobSnapshot) -> Response:
    """The GET /jobs/{job_id} answer for `snap` (also the hot path's)."""
    return status_response(svc.settings, snap, job_view(snap))


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=problems(401, 404, 422, 429))
async def get_job(
    request: Request,
    job_id: str,
    wait: WaitSeconds = None,
    svc: Services = Depends(services),
    caller: Caller = Depends(current_caller),
) -> Response:
    """The job's status; with `?wait=N` a long-poll that answers as soon as it is final."""
    if wait is None:
        return job_response(svc, await svc.queues.snapshot(job_id, caller.client_id))
    return await long_poll(request, svc, caller, job_id, wait, job_view)


@router.get("/jobs/{job_id}/events", responses={**SSE_RESPONSES, **problems(401, 404, 429)})
async def job_events(
    job_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Server-Sent Events: a `status` event now and on every change; ends after the final one.

    A reconnecting client (Last-Event-ID) first gets the job as it is now, so it misses
    no state: each event carries the whole job view, not a delta.
    """
    return await event_stream(svc, caller, job_id, job_view)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobPublic,
    responses={202: {"model": JobPublic}, **problems(404, 409)},
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

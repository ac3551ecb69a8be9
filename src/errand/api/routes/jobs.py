"""GET /jobs/{jobId}: any job's status, whatever its queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from errand.api.deps import Services, services
from errand.api.http.problems import ProblemRoute
from errand.api.polling import status_response
from errand.api.routes._openapi import problems
from errand.api.schemas import JobPublic
from errand.queue.snapshot import JobSnapshot
from errand.queue.views import job_view

router = APIRouter(tags=["jobs"], route_class=ProblemRoute)

MAX_WAIT_S = 60
SSE_HEARTBEAT_S = 15.0


def job_response(svc: Services, snap: JobSnapshot) -> Response:
    """The GET /jobs/{job_id} answer for `snap` (also the hot path's)."""
    return status_response(svc.settings, snap, job_view(snap))


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=problems(404, 422))
async def get_job(
    request: Request,
    job_id: str,
    wait: float | None = Query(
        default=None,
        gt=0,
        le=MAX_WAIT_S,
        description="Hold the request until the job is final or this many seconds pass.",
    ),
    svc: Services = Depends(services),
) -> Response:
    """The job's status; with `?wait=N` a long-poll that answers as soon as it is final."""
    if wait is None:
        return job_response(svc, await svc.queues.snapshot(job_id))
    waiting = asyncio.ensure_future(svc.events.wait_until_final(job_id, wait))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not waiting.done():  # the client left: free its subscription at once
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return Response(status_code=499)
    return job_response(svc, waiting.result())


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (a GET has no body left to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **problems(404)},
)
async def job_events(job_id: str, svc: Services = Depends(services)) -> Response:
    """Server-Sent Events: a `status` event now and on every change; ends after the final one.

    A reconnecting client (Last-Event-ID) first gets the job as it is now, so it misses
    no state: each event carries the whole job view, not a delta.
    """
    await svc.queues.snapshot(job_id)  # 404 before the stream starts
    return StreamingResponse(
        _sse_stream(svc, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse_stream(svc: Services, job_id: str) -> AsyncIterator[bytes]:
    changes = svc.events.changes(job_id)
    step: asyncio.Future[tuple[str, JobSnapshot]] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(changes))
            while not step.done():
                done, _ = await asyncio.wait({step}, timeout=SSE_HEARTBEAT_S)
                if not done:
                    yield b": heartbeat\n\n"
            try:
                event_id, snap = step.result()
            except StopAsyncIteration:
                return
            data = orjson.dumps(job_view(snap))
            yield b"id: %s\nevent: status\ndata: %s\n\n" % (event_id.encode(), data)
    finally:
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        await changes.aclose()

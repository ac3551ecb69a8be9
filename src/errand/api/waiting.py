"""The status answer, its long-poll (`?wait=N`) and its SSE stream, for any view of a job.

GET /jobs/{id} and GET /notifications/{id} show a job through different views
(`views.job_view`, `views.notification_view`); everything else about answering,
waiting and streaming is this one implementation, so the two cannot drift.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from errand.api.caller import Caller
from errand.api.deps import Services
from errand.api.polling import status_response
from errand.queue.snapshot import JobSnapshot

View = Callable[[JobSnapshot], dict[str, Any]]

MAX_WAIT_S = 60
SSE_HEARTBEAT_S = 15.0

WaitSeconds = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_WAIT_S,
        description="Hold the request until the job is final or this many seconds pass.",
    ),
]
"""The `?wait=N` parameter: 0 < N <= 60 seconds, anything else is a 422."""


async def long_poll(
    request: Request, svc: Services, caller: Caller, job_id: str, wait_s: float, view: View
) -> Response:
    """The status answer as soon as the job is final, or after `wait_s` as it is then.

    Raises NotFound for an unknown job or another client's. A client that leaves gets
    a 499 (never sent) and frees its subscription at once.
    """
    waiting = asyncio.ensure_future(svc.events.wait_until_final(job_id, wait_s, caller.client_id))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not waiting.done():
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return Response(status_code=499)
    snap = waiting.result()
    return status_response(svc.settings, snap, view(snap))


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (a GET has no body left to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def sse_response(svc: Services, caller: Caller, job_id: str, view: View) -> Response:
    """Server-Sent Events: a `status` event with `view` of the job now and on every change;
    the stream ends after the final one. Raises NotFound (before the stream starts) for an
    unknown job or another client's."""
    await svc.queues.snapshot(job_id, caller.client_id)
    return StreamingResponse(
        _sse_stream(svc, job_id, view),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse_stream(svc: Services, job_id: str, view: View) -> AsyncIterator[bytes]:
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
            data = orjson.dumps(view(snap))
            yield b"id: %s\nevent: status\ndata: %s\n\n" % (event_id.encode(), data)
    finally:
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        await changes.aclose()

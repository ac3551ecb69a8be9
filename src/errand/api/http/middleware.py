"""HTTP metrics for the FastAPI path: a pure ASGI middleware around the shared HttpRecorder."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from errand.metrics.http import UNMATCHED_ROUTE, HttpRecorder


class HttpMetricsMiddleware:
    """Counts requests by method, route template and status (the hot path counts its own
    requests on the same recorder).

    The route template (`/jobs/{job_id}`) comes from the matched route Starlette
    leaves in the scope; a request no route matched is counted as `unmatched`.
    """

    def __init__(self, app: ASGIApp, recorder: HttpRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = self.recorder.started()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.recorder.finished(scope.get("method", "GET"), route, status, started)

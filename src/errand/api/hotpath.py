"""The hot path: the busiest requests answered without the framework's per-request layers.

POST /notifications, POST /reports (without an Idempotency-Key), and the status
reads GET /jobs/{id} and GET /notifications/{id} (without a query string such as
`?wait=`) are most of an errand API's traffic. Through FastAPI each one
passes seven middleware layers, route matching over every route, dependency
solving and a Request object before errand's code runs: about half the CPU of the
request (profiled with py-spy, docs/performance.md). Here they go straight from
the ASGI scope to the same handlers the FastAPI routes call (`routes.*.accept`,
`routes.jobs.job_response`, `routes.notifications.status`), with the same body
reader (`http/body.py`), the same gate (`gate.py`: API key, rate limit), the same
error mapper (`http/problems.py`) and the same metrics recorder (`metrics/http.py`),
so the two paths cannot answer differently.
Everything else, and these routes with an Idempotency-Key or a query string, goes
through FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from errand.api.caller import Caller
from errand.api.deps import Services
from errand.api.gate import answer_for_client
from errand.api.http.body import parse_json_object, read_body
from errand.api.routes import jobs, notifications, reports
from errand.metrics.http import HttpRecorder

_IDEMPOTENCY_KEY = b"idempotency-key"
_JOBS = "/jobs/"
_NOTIFICATIONS = "/notifications/"
JOB_ROUTE = "/jobs/{job_id}"
NOTIFICATION_ROUTE = "/notifications/{job_id}"


class HotPath:
    """Answers the hot requests of one API process; `match` says whether one is."""

    def __init__(self, services: Callable[[], Services], metrics: HttpRecorder) -> None:
        self._services = services
        self._metrics = metrics

    @staticmethod
    def match(scope: Scope) -> str | None:
        """The route template of a hot request, or None to let FastAPI answer it."""
        if scope["type"] != "http" or scope.get("root_path"):
            return None
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "POST":
            if path != "/notifications" and path != "/reports":
                return None
            for name, _ in scope["headers"]:
                if name == _IDEMPOTENCY_KEY:
                    return None
            return path
        if method != "GET" or scope["query_string"]:
            return None
        if _one_segment_after(path, _JOBS):
            return JOB_ROUTE
        if _one_segment_after(path, _NOTIFICATIONS):
            return NOTIFICATION_ROUTE
        return None

    async def __call__(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = self._metrics.started()
        status = 500
        try:
            response = await self._answer(route, scope, receive)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self._metrics.finished(scope["method"], route, status, started)

    async def _answer(self, route: str, scope: Scope, receive: Receive) -> Response:
        svc = self._services()

        async def answer(caller: Caller) -> Response:
            if route == JOB_ROUTE:
                job_id = scope["path"][len(_JOBS) :]
                return jobs.job_response(svc, await svc.queues.snapshot(job_id, caller.client_id))
            if route == NOTIFICATION_ROUTE:
                return await notifications.status(svc, caller, scope["path"][len(_NOTIFICATIONS) :])
            raw = await read_body(scope["headers"], receive, svc.settings.max_body_bytes)
            accept = notifications.accept if route == "/notifications" else reports.accept
            return await accept(svc, caller, parse_json_object(raw))

        where = f"{scope['method']} {route}"
        return await answer_for_client(svc.gate, scope["headers"], where, answer)


def _one_segment_after(path: str, prefix: str) -> bool:
    """`path` is `prefix` plus one non-empty segment (what a `{job_id}` parameter matches)."""
    return path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]

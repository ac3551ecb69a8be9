"""The hot path: the busiest requests answered without the framework's per-request layers.

POST /notifications, POST /reports (without an Idempotency-Key), and the status
reads GET /jobs/{id} and GET /notifications/{id} (without a query string such as
`?wait=`) are most of an errand API's traffic. Through FastAPI each one
passes seven middleware layers, route matching over every route, dependency
solving and a Request object before errand's code runs: about half the CPU of the
request (profiled with py-spy, docs/performance.md). Here they go straight from
the ASGI scope to the same handlers the FastAPI routes call (`routes.*.accept`,
`routes.jobs.job_response`, `routes.notifications.status`), with the same
problem documents and the same metrics, so the two paths cannot answer
differently. Everything else, and these routes with an Idempotency-Key or a
query string, goes through FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client.metrics import Counter, Histogram
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from errand.api.deps import Services
from errand.api.http.body import check_declared_length, parse_json_object
from errand.api.http.problems import REDIS_DOWN, errand_problem, redis_down_problem
from errand.api.http.responses import problem
from errand.api.routes import jobs, notifications, reports
from errand.errors import BodyTooLarge, ErrandError
from errand.metrics.registry import HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS

log = logging.getLogger("errand.api")

_IDEMPOTENCY_KEY = b"idempotency-key"
_CONTENT_LENGTH = b"content-length"
_JOBS = "/jobs/"
_NOTIFICATIONS = "/notifications/"
JOB_ROUTE = "/jobs/{job_id}"
NOTIFICATION_ROUTE = "/notifications/{job_id}"


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nothing to answer."""


class HotPath:
    """Answers the hot requests of one API process; `match` says whether one is."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

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
        started = time.perf_counter()
        HTTP_IN_FLIGHT.inc()
        status = 500
        try:
            response = await self._answer(route, scope, receive)
            status = response.status_code
            await response(scope, receive, send)
        except ClientGone:
            status = 499
        finally:
            HTTP_IN_FLIGHT.dec()
            self._record(scope["method"], route, status, time.perf_counter() - started)

    async def _answer(self, route: str, scope: Scope, receive: Receive) -> Response:
        svc = self._services()
        try:
            if route == JOB_ROUTE:
                job_id = scope["path"][len(_JOBS):]
                return jobs.job_response(svc, await svc.queues.snapshot(job_id))
            if route == NOTIFICATION_ROUTE:
                return await notifications.status(svc, scope["path"][len(_NOTIFICATIONS):])
            body = parse_json_object(await _read_body(scope, receive, svc.settings.max_body_bytes))
            accept = notifications.accept if route == "/notifications" else reports.accept
            return await accept(svc, body)
        except ErrandError as err:
            return errand_problem(err)
        except REDIS_DOWN as err:
            return redis_down_problem(err)
        except ClientGone:
            raise
        except Exception:
            log.exception("unhandled error answering %s %s", scope["method"], route)
            return problem(
                500, "Internal Server Error", "errand failed to answer; the error is logged",
                "internal",
            )

    def _record(self, method: str, route: str, status: int, seconds: float) -> None:
        """HTTP metrics under the same names and labels HttpMetricsMiddleware uses,
        with the label children bound once per (route, status) instead of per request."""
        counter = self._requests.get((method, route, status))
        if counter is None:
            counter = HTTP_REQUESTS.labels(method, route, str(status))
            self._requests[method, route, status] = counter
        counter.inc()
        histogram = self._durations.get((method, route))
        if histogram is None:
            histogram = HTTP_DURATION.labels(method, route)
            self._durations[method, route] = histogram
        histogram.observe(seconds)


def _one_segment_after(path: str, prefix: str) -> bool:
    """`path` is `prefix` plus one non-empty segment (what a `{job_id}` parameter matches)."""
    return path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix):]


async def _read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, refused past `max_bytes` (declared or received)."""
    for name, value in scope["headers"]:
        if name == _CONTENT_LENGTH:
            check_declared_length(value.decode("latin-1"), max_bytes)
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(f"the body is over {max_bytes} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

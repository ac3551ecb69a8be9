"""The one error mapper: every exception an API request raises becomes its response.

Domain errors and framework errors become RFC 9457 problem documents; anything
unexpected becomes a 500 problem document that says nothing of the internals (the
error is logged). The hot path calls `error_response` directly; the FastAPI routes
reach it through `ProblemRoute` and the app's exception handlers. HTTP status codes
for domain errors live here and nowhere else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from redis.exceptions import ClusterError, OutOfMemoryError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from errand.api.http.body import ClientGone
from errand.api.http.responses import ResponseError, problem
from errand.errors import (
    BodyTooLarge,
    Conflict,
    ErrandError,
    FieldError,
    InvalidInput,
    MalformedBody,
    NotFound,
    QueueFull,
    QueueUnavailable,
    RateLimited,
    RecipientLimited,
    Unauthorized,
    UnsupportedMediaType,
)

log = logging.getLogger("errand.api")

_STATUS = {
    NotFound: (404, "Not Found", "not-found"),
    Conflict: (409, "Conflict", "conflict"),
    InvalidInput: (422, "Unprocessable Content", "validation"),
    MalformedBody: (400, "Bad Request", "malformed-body"),
    BodyTooLarge: (413, "Content Too Large", "body-too-large"),
    UnsupportedMediaType: (415, "Unsupported Media Type", "unsupported-media-type"),
    Unauthorized: (401, "Unauthorized", "unauthorized"),
    RecipientLimited: (429, "Too Many Requests", "recipient-limit"),
    RateLimited: (429, "Too Many Requests", "rate-limited"),
    QueueFull: (503, "Service Unavailable", "queue-full"),
    QueueUnavailable: (503, "Service Unavailable", "unavailable"),
}
UNAVAILABLE_RETRY_AFTER_S = 5
# The challenge of a 401 on the client routes (RFC 6750).
_CHALLENGE = 'Bearer realm="errand"'


def errand_problem(exc: ErrandError) -> Response:
    """The problem document for a domain error."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            status, title, slug = _STATUS[cls]
            break
    else:
        status, title, slug = 400, "Bad Request", "bad-request"
    extra: dict[str, object] = {}
    if isinstance(exc, InvalidInput) and exc.errors:
        extra["errors"] = [asdict(e) for e in exc.errors]
    if isinstance(exc, Conflict) and exc.job_status is not None:
        extra["jobStatus"] = exc.job_status
    return problem(status, title, exc.detail, slug, headers=_headers(exc, status), **extra)


def _headers(exc: ErrandError, status: int) -> dict[str, str] | None:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(max(1, exc.retry_after_s))}
    if status == 503:
        return {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": _CHALLENGE}
    return None


def _validation_problem(exc: RequestValidationError) -> Response:
    errors = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p not in ("query", "path", "header")]
        errors.append(asdict(FieldError(".".join(loc) or "request", str(item.get("msg", "")))))
    return problem(
        422,
        "Unprocessable Content",
        "the request breaks the rules below",
        "validation",
        errors=errors,
    )


def _http_problem(exc: HTTPException) -> Response:
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
    return problem(exc.status_code, title, detail, "http", headers=exc.headers)


# A cluster whose slot has no master (CLUSTERDOWN, MASTERDOWN, TRYAGAIN during a
# failover, or no node known for the slot) is a store that does not answer, too.
REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
)


def is_cluster_client_race(exc: Exception) -> bool:
    """redis-py's cluster client (pinned 8.1) can close a connection under a command while
    it refreshes the topology (a master failing over): the command then dies with an
    AttributeError inside redis-py's connection code. It is the store being away, not a
    bug of the request (tests/reliability/test_cluster_failover.py)."""
    if not isinstance(exc, AttributeError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_REDIS_CONNECTION_FILE)


_REDIS_CONNECTION_FILE = os.path.join("redis", "asyncio", "connection.py")


def redis_down_problem(exc: Exception) -> Response:
    """The 503 for a job store that does not answer (one of REDIS_DOWN)."""
    log.warning("redis unavailable: %s", exc)
    return problem(
        503,
        "Service Unavailable",
        "the job store does not answer; try again shortly",
        "unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


def is_store_full(exc: Exception) -> bool:
    """The store refused a write at its `maxmemory` (noeviction): Valkey's OOM error, also
    when a Lua script (BullMQ's) relays it. The write was refused whole: nothing half-made."""
    if isinstance(exc, OutOfMemoryError):
        return True
    return isinstance(exc, RedisResponseError) and "used memory > 'maxmemory'" in str(exc)


def store_full_problem(exc: Exception) -> Response:
    """The 503 for a store at its memory limit: nothing was created."""
    log.warning("the job store is full (maxmemory): %s", exc)
    return problem(
        503,
        "Service Unavailable",
        "the job store is full; nothing was created, try again later",
        "store-full",
        headers={"Retry-After": "30"},
    )


def error_response(exc: Exception, where: str) -> Response:
    """The response to a request that raised `exc`; `where` ("GET /path") goes to the log."""
    if isinstance(exc, ErrandError):
        return errand_problem(exc)
    if isinstance(exc, REDIS_DOWN) or is_cluster_client_race(exc):
        return redis_down_problem(exc)
    if is_store_full(exc):
        return store_full_problem(exc)
    if isinstance(exc, ResponseError):
        return exc.response
    if isinstance(exc, RequestValidationError):
        return _validation_problem(exc)
    if isinstance(exc, HTTPException):
        return _http_problem(exc)
    if isinstance(exc, ClientGone):
        return Response(status_code=499)  # nobody reads it; the status is for the metrics
    log.exception("unhandled error answering %s", where)
    return problem(
        500, "Internal Server Error", "errand failed to answer; the error is logged", "internal"
    )


def _where(request: Request) -> str:
    return f"{request.method} {request.url.path}"


class ProblemRoute(APIRoute):
    """A FastAPI route whose every error, expected or not, is answered by `error_response`.

    Starlette sends an exception no handler claims to its ServerErrorMiddleware, which
    answers with a plain-text 500; catching here keeps every answer a problem document.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return error_response(exc, _where(request))

        return answer


def _handle(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        allow = _allow(request)
        if allow is not None:
            exc = HTTPException(405, exc.detail, headers={"Allow": allow})
    return error_response(exc, _where(request))


def route_methods(routers: Iterable[APIRouter]) -> dict[str, frozenset[str]]:
    """Each path template's methods across the routes that serve it (GET and POST
    /schedules are two routes): a 405's `Allow`. Kept in `app.state.route_methods`."""
    table: dict[str, set[str]] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.methods:
                table.setdefault(route.path, set()).update(route.methods)
    return {path: frozenset(methods) for path, methods in table.items()}


def _allow(request: Request) -> str | None:
    """The `Allow` of a 405: Starlette names the methods of the first route whose path
    matched only; this names those of every route with that route's path template."""
    route = request.scope.get("route")
    table: dict[str, frozenset[str]] = getattr(request.app.state, "route_methods", {})
    methods = table.get(getattr(route, "path", ""))
    return ", ".join(sorted(methods)) if methods else None


def install_problem_handlers(app: FastAPI) -> None:
    """For errors raised outside a ProblemRoute (no route matched, a middleware failed)."""
    known = (ResponseError, ErrandError, *REDIS_DOWN, RequestValidationError, HTTPException)
    for cls in (*known, ClientGone, Exception):
        app.add_exception_handler(cls, _handle)

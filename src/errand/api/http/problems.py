"""Exception handlers: domain errors and framework errors become RFC 9457 problem documents.

HTTP status codes for domain errors live here and nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from errand.api.http.responses import ResponseError, problem
from errand.errors import (
    BodyTooLarge,
    Conflict,
    ErrandError,
    FieldError,
    InvalidInput,
    MalformedBody,
    NotFound,
    QueueUnavailable,
)

log = logging.getLogger("errand.api")

_STATUS = {
    NotFound: (404, "Not Found", "not-found"),
    Conflict: (409, "Conflict", "conflict"),
    InvalidInput: (422, "Unprocessable Content", "validation"),
    MalformedBody: (400, "Bad Request", "malformed-body"),
    BodyTooLarge: (413, "Content Too Large", "body-too-large"),
    QueueUnavailable: (503, "Service Unavailable", "unavailable"),
}


def _errand_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ErrandError)
    return errand_problem(exc)


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
    headers = {"Retry-After": "5"} if status == 503 else None
    return problem(status, title, exc.detail, slug, headers=headers, **extra)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p not in ("query", "path", "header")]
        errors.append(asdict(FieldError(".".join(loc) or "request", str(item.get("msg", "")))))
    return problem(
        422, "Unprocessable Content", "the request breaks the rules below", "validation",
        errors=errors,
    )


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
    return problem(exc.status_code, title, detail, "http", headers=exc.headers)


def _redis_down(request: Request, exc: Exception) -> Response:
    return redis_down_problem(exc)


REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError)


def redis_down_problem(exc: Exception) -> Response:
    """The 503 for a job store that does not answer (one of REDIS_DOWN)."""
    log.warning("redis unavailable: %s", exc)
    return problem(
        503, "Service Unavailable", "the job store does not answer; try again shortly",
        "unavailable", headers={"Retry-After": "5"},
    )


def _ready_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ResponseError)
    return exc.response


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ResponseError, _ready_response)
    app.add_exception_handler(ErrandError, _errand_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for down in REDIS_DOWN:
        app.add_exception_handler(down, _redis_down)

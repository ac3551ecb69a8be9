"""What a route declares about itself in the OpenAPI document, for its decorator.

Routes parse their own bodies and answer with ready-made responses, so FastAPI
cannot infer their bodies, headers or streams: these fragments say them. What
every route of a kind shares (problem documents, 400/413/415/422 for a body,
404 for an id, 401/403/429/503, security, RateLimit headers) is added by
`errand.api.openapi` from the route's path and inputs, so a new route needs only
its own fragments here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import StreamingResponse

from errand.api.idempotency import KEY_PATTERN

COMPONENT = "#/components/schemas/{model}"
RETRY_AFTER_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1}
WWW_AUTHENTICATE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^Bearer( |$)"}

Responses = dict[int | str, dict[str, Any]]

PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not UTF-8 JSON, not a JSON object, or nested deeper than 32 levels.",
    401: "No valid credentials: a missing, malformed, unknown or revoked bearer token.",
    403: "The admin token is wrong, or none is configured (ERRAND_ADMIN_TOKEN).",
    404: "Unknown id (another client's answers the same).",
    409: "The resource is not in a state that allows this request.",
    413: "The body is over the size limit (64 KiB; 65,536 bytes is still accepted).",
    415: "The body is not sent as application/json (or another application/*+json).",
    422: "A well-formed request that breaks a rule; `errors` lists each one.",
    429: "Over the client's rate limit or per-recipient cap; nothing was created.",
    503: "The job store did not answer in time, or the queue is full; nothing was created.",
}


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """`$ref` to `model` in the components, carrying the definitions it needs in `$defs`
    (`errand.api.openapi` moves them into the components)."""
    schema = model.model_json_schema(ref_template=COMPONENT)
    defs = {**schema.pop("$defs", {}), model.__name__: schema}
    return {"$ref": COMPONENT.format(model=model.__name__), "$defs": defs}


def header(description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """A response header object."""
    return {"description": description, "required": required, "schema": schema}


def retry_after(when: str, *, required: bool = True) -> dict[str, Any]:
    return header(f"Whole seconds to wait {when}.", RETRY_AFTER_SCHEMA, required=required)


WWW_AUTHENTICATE = header("`Bearer`, with a realm.", WWW_AUTHENTICATE_SCHEMA, required=True)


def problems(*statuses: int) -> Responses:
    """`responses=` entries for problem answers particular to a route, with the headers
    they carry (`errand.api.openapi` adds the problem+json content to every error)."""
    entries: Responses = {}
    for status in statuses:
        entries |= problem(status, PROBLEM_DESCRIPTIONS[status])
    return entries


def problem(status: int, description: str) -> Responses:
    """The `responses=` entry of one problem answer, described for this route."""
    entry: dict[str, Any] = {"description": description}
    if status == 401:
        entry["headers"] = {"WWW-Authenticate": WWW_AUTHENTICATE}
    elif status in (429, 503):
        entry["headers"] = {"Retry-After": retry_after("before trying again")}
    return {status: entry}


def json_body(model: type[BaseModel], *, idempotent: bool = False) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON request body of `model`, and the Idempotency-Key
    request header when the route honours one."""
    extra: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema_of(model)}},
        }
    }
    if idempotent:
        extra["parameters"] = [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "The same key and body within 24 h replay the first answer "
                "and create nothing; another body is a 422, a request still running a 409.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": KEY_PATTERN,
                },
            }
        ]
    return extra


def accepted_job(model: type[BaseModel], location: str) -> Responses:
    """The `202 Accepted` of a queued job: its body, `Location` and a polling hint."""
    return {
        202: {
            "model": model,
            "description": "Queued (or matched to the job in flight); poll the Location.",
            "headers": {
                "Location": header(location, {"type": "string"}, required=True),
                "Retry-After": retry_after("before polling the Location"),
            },
        }
    }


def created(model: type[BaseModel], location: str) -> Responses:
    """The `201 Created` of a new resource: its body and `Location`."""
    return {
        201: {
            "model": model,
            "description": "Created.",
            "headers": {"Location": header(location, {"type": "string"}, required=True)},
        }
    }


def canceled_job(model: type[BaseModel]) -> Responses:
    """The answers of a cancel: 200 canceled now, 202 asked to stop, 409 too late."""
    return {
        200: {
            "model": model,
            "description": "Canceled now (`canceled`), or final anyway: an active report "
            "that finished before it could stop.",
        },
        202: {
            "model": model,
            "description": "An active report asked to stop at its next progress step "
            "(still `active`, `cancelRequested: true`); poll /jobs/{jobId}.",
            "headers": {"Retry-After": retry_after("before polling the job")},
        },
        **problem(
            409,
            "Too late to cancel: a final job, or a notification being sent; `jobStatus` "
            "holds its status.",
        ),
    }


def job_status(model: type[BaseModel]) -> Responses:
    """The `200` of a job's status: `Retry-After` while the job is not final."""
    return {
        200: {
            "model": model,
            "description": "The job now (or when it became final, with ?wait=).",
            "headers": {"Retry-After": retry_after("before polling again", required=False)},
        }
    }


def event_stream(model: type[BaseModel]) -> dict[str, Any]:
    """Decorator keywords of a Server-Sent Events route whose events carry `model` as JSON.

    Each event is described by `itemSchema` (OpenAPI 3.2's keyword, which FastAPI's own
    SSE routes emit in their 3.1 documents too): a `status` event whose `data` is the
    view as JSON.
    """
    event = {
        "type": "object",
        "required": ["event", "data", "id"],
        "properties": {
            "event": {"const": "status"},
            "id": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": schema_of(model),
            },
        },
    }
    last_event_id = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Sent by a reconnecting client; the stream starts from the job now.",
        "schema": {"type": "string"},
    }
    ok = {
        "description": "One `status` event now and on every change; ends after the final one.",
        "content": {"text/event-stream": {"itemSchema": event}},
    }
    return {
        "response_class": StreamingResponse,
        "responses": {200: ok},
        "openapi_extra": {"parameters": [last_event_id]},
    }

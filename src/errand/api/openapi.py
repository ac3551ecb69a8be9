"""The OpenAPI document: FastAPI's description of the routes, completed by the rules they share.

A route declares what is its own (`routes/_openapi.py`: body, success answers,
headers, route-specific problems). Everything that follows from the route's kind
is added here, in one place, so every route, including one added later, gets it:

- every 4xx/5xx answer is `application/problem+json` with the `Problem` schema;
- a JSON body: 400, 413, 415, 422; a query or header parameter: 422; an
  `Idempotency-Key`: 409; a path parameter: 404; every route that reads Redis: 503;
- `/admin/*`: the `adminToken` bearer scheme, 401 (`WWW-Authenticate`) and 403;
- the client routes (`/reports`, `/notifications`, `/jobs`, `/schedules`): 429 and
  the `RateLimit-*` headers (on every answer but a 401, for a client with a rate
  limit), and, when the server requires API keys, the `apiKey` bearer scheme and 401;
- every other route is declared open (`security: []`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from errand.api.http.responses import PROBLEM_MEDIA_TYPE
from errand.api.routes._openapi import (
    COMPONENT,
    PROBLEM_DESCRIPTIONS,
    header,
    problems,
    schema_of,
)
from errand.api.schemas import Problem

ADMIN_PREFIX = "/admin/"
CLIENT_PREFIXES = ("/reports", "/notifications", "/jobs", "/schedules")
WITHOUT_REDIS = frozenset({"/healthz", "/metrics"})
METHODS = ("get", "put", "post", "delete", "patch")

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "ERRAND_ADMIN_TOKEN (errand up generates one: `errand secrets`).",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A client's API key (POST /admin/clients and /keys show it once).",
    },
}
_COUNT = {"type": "integer", "minimum": 0}
# Sent on every answer but a 401; a client without a rate limit (0) gets none.
_SENT = " Absent for a client without a rate limit."
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": header("The client's burst (bucket size)." + _SENT, _COUNT, required=False),
    "RateLimit-Remaining": header(
        "Whole tokens left in the bucket." + _SENT, _COUNT, required=False
    ),
    "RateLimit-Reset": header(
        "Whole seconds until the bucket is full." + _SENT, _COUNT, required=False
    ),
}
RATE_LIMIT_REFS = {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def operation_id(route: APIRoute) -> str:
    """The handler's name (`create_report`, `get_job`): what a generated client's method
    is called, instead of FastAPI's name-path-method concatenation."""
    return route.name


def install_openapi(app: FastAPI, *, api_keys: bool) -> None:
    """Serve `describe(app, api_keys=...)` at the app's openapi_url, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app, api_keys=api_keys)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(app: FastAPI, *, api_keys: bool) -> dict[str, Any]:
    """The complete OpenAPI document of `app`; `api_keys`: the client routes need a key."""
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    problem = schema_of(Problem)
    schemas.update(problem["$defs"])
    doc["components"]["headers"] = dict(RATE_LIMIT_HEADERS)
    doc["components"]["securitySchemes"] = {
        name: scheme for name, scheme in SECURITY_SCHEMES.items() if name != "apiKey" or api_keys
    }
    for path, operation in _operations(doc):
        _complete(path, operation, api_keys=api_keys)
    _hoist_definitions(doc["paths"], schemas)
    return doc


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, item[method]


def _complete(path: str, operation: dict[str, Any], *, api_keys: bool) -> None:
    """Add what `operation` answers by its kind (see the module docstring)."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if _is_fastapi_validation(responses.get("422", {})):
        del responses["422"]  # errand answers its own problem document, where one can occur
    parameters: list[dict[str, Any]] = operation.get("parameters", [])
    for parameter in parameters:
        parameter["schema"] = _without_null(parameter["schema"])
    shared = _shared_problems(path, operation, parameters)
    if path.startswith(ADMIN_PREFIX):
        operation["security"] = [{"adminToken": []}]
        shared |= {401, 403}
    elif path.startswith(CLIENT_PREFIXES):
        operation["security"] = [{"apiKey": []}] if api_keys else []
        shared |= {429, 401} if api_keys else {429}
    else:
        operation["security"] = []
    for status, entry in problems(*sorted(shared)).items():
        responses.setdefault(str(status), entry)
    for status, response in responses.items():
        _complete_response(int(status), response, path)


def _shared_problems(path: str, operation: dict[str, Any], parameters: list[Any]) -> set[int]:
    statuses = set()
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    if any(p["in"] in ("query", "header") and _constrained(p["schema"]) for p in parameters):
        statuses.add(422)
    if any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters):
        statuses.add(409)
    if any(p["in"] == "path" for p in parameters):
        statuses.add(404)
    if path not in WITHOUT_REDIS:
        statuses.add(503)
    return statuses


def _complete_response(status: int, response: dict[str, Any], path: str) -> None:
    """Problem content on an error answer; the RateLimit headers where they are sent."""
    headers: dict[str, Any] = response.get("headers", {})
    if status >= 400:
        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _ref("Problem")}}}
        response.setdefault("description", PROBLEM_DESCRIPTIONS.get(status, "Error"))
    if path.startswith(CLIENT_PREFIXES) and status != 401:  # a 401 counted nobody
        headers.update(RATE_LIMIT_REFS)
    if headers:
        response["headers"] = headers


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    """FastAPI's own 422 entry (its validation error shape, which errand never answers)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _constrained(schema: dict[str, Any]) -> bool:
    """A parameter schema that some value breaks (anything beyond "any string")."""
    annotations = {"title", "description", "type"}
    return schema.get("type") != "string" or any(key not in annotations for key in schema)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without FastAPI's `null` alternative: a parameter is absent
    or has a value, never null."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**rest, **options[0]}


def _hoist_definitions(node: Any, schemas: dict[str, Any]) -> None:
    """Move the `$defs` that `schema_of` leaves in operations into the components."""
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            schemas.setdefault(name, schema)
        for value in node.values():
            _hoist_definitions(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _hoist_definitions(value, schemas)


def _ref(name: str) -> str:
    return COMPONENT.format(model=name)

"""The one body reader: a JSON object body with a hard size limit, before any model validation.

Both API paths read bodies here, straight from the ASGI `receive` channel: the hot
path with the scope it was given, the FastAPI routes with their Request's. A body
must be declared JSON (`application/json` or any `application/*+json`, parameters
allowed), so a cross-site form or `text/plain` request cannot drive errand, and may
nest at most MAX_JSON_DEPTH levels deep.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Receive

from errand.errors import (
    BodyTooLarge,
    FieldError,
    InvalidInput,
    MalformedBody,
    UnsupportedMediaType,
)

M = TypeVar("M", bound=BaseModel)

MAX_JSON_DEPTH = 32  # objects and arrays nested in each other; the top-level object is 1
_CONTAINERS = (dict, list)

_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nothing to answer."""


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body of a FastAPI route's request as a JSON object (see `read_body`)."""
    return parse_json_object(await read_body(request.scope["headers"], request.receive, max_bytes))


async def read_body(
    headers: Iterable[tuple[bytes, bytes]], receive: Receive, max_bytes: int
) -> bytes:
    """The whole request body.

    Raises UnsupportedMediaType unless the headers declare a JSON body, BodyTooLarge
    past `max_bytes` (declared or received), ClientGone when the client disconnects
    first.
    """
    media_type = declared = b""
    for name, value in headers:
        if name == _CONTENT_TYPE and not media_type:
            media_type = value
        elif name == _CONTENT_LENGTH:
            declared = value
    check_json_media_type(media_type)
    if declared:
        check_declared_length(declared.decode("latin-1"), max_bytes)
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


def check_declared_length(declared: str | None, max_bytes: int) -> None:
    """Refuse a body by its Content-Length before reading any of it."""
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"the body is over {max_bytes} bytes")


def check_json_media_type(content_type: bytes) -> None:
    """Raises UnsupportedMediaType unless `content_type` is `application/json` or
    `application/<anything>+json`, with or without parameters (`; charset=utf-8`)."""
    media_type = content_type.partition(b";")[0].strip().lower()
    if media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    ):
        return
    shown = media_type.decode("latin-1")[:100] or "no Content-Type"
    raise UnsupportedMediaType(
        f"the body must be JSON, sent with Content-Type: application/json (got {shown})"
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Raises MalformedBody unless `raw` is UTF-8 JSON whose top level is an object
    nested at most MAX_JSON_DEPTH levels deep."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise MalformedBody(f"the body is not valid UTF-8 JSON: {err}") from err
    if not isinstance(value, dict):
        raise MalformedBody("the body must be a JSON object")
    # Too few brackets to nest that deep (the usual case): no need to walk the value.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH:
        check_depth(value)
    return value


def check_depth(value: dict[str, Any]) -> None:
    """Raises MalformedBody when objects and arrays nest deeper than MAX_JSON_DEPTH."""
    level: list[Any] = [value]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            inner
            for outer in level
            for inner in (outer.values() if isinstance(outer, dict) else outer)
            if isinstance(inner, _CONTAINERS)
        ]
        if not level:
            return
    raise MalformedBody(f"the body nests deeper than {MAX_JSON_DEPTH} levels")


def validate_body(model: type[M], body: dict[str, Any]) -> M:
    """Validate a body against `model`; a field sent as null counts as absent.

    Raises InvalidInput with one FieldError per broken rule.
    """
    present = {key: value for key, value in body.items() if value is not None}
    try:
        return model.model_validate(present)
    except ValidationError as err:
        raise InvalidInput("the request breaks the rules below", field_errors(err)) from err


def field_errors(err: ValidationError) -> list[FieldError]:
    errors = []
    for item in err.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        errors.append(FieldError(field, message))
    return errors

"""Fast JSON and problem-document responses (orjson, no per-request encoder setup)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content), status_code, headers=headers, media_type="application/json"
    )


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 9457 problem document; `slug` names the problem type (`urn:errand:problem:<slug>`)."""
    body = {
        "type": f"urn:errand:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


class ResponseError(Exception):
    """Raised from a dependency to answer with a ready-made response (e.g. admin auth)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response

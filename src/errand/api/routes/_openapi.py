"""OpenAPI fragments for routes that parse their own bodies and answer problem documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from errand.api.schemas import Problem


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON request body of `model`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for problem documents."""
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}}
        for status in statuses
    }

"""The one decoder of BullMQ's job hash: field names, precedence and types as bullmq reads them.

Every reader of a job hash (the snapshot script's reply, the DLQ listing, the fast
engine's FastJob) decodes it here, so they agree on which field wins: bullmq's
`Job.fromJSON` reads `attemptsMade` before `atm`, and so does errand.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from errand.keys import ANONYMOUS_CLIENT


def client_of(data: dict[str, Any]) -> str:
    """The client a job's data names (jobs from before clients belong to `anonymous`)."""
    owner = data.get("clientId")
    return owner if isinstance(owner, str) and owner else ANONYMOUS_CLIENT


def pairs(flat: list[Any]) -> dict[str, str]:
    """A HGETALL reply as Lua returns it (field, value, field, value...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def loads(raw: str | None, default: Any) -> Any:
    """A JSON field, or `default` when it is absent. Raises ValueError when it is unreadable.

    bullmq writes JSON with the stdlib (which allows NaN): orjson first, the stdlib after.
    """
    if raw is None:
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def json_field(fields: dict[str, str], name: str, default: Any) -> Any:
    """A JSON field, or `default` when it is absent or unreadable."""
    try:
        return loads(fields.get(name), default)
    except ValueError:
        return default


def int_field(fields: dict[str, str], name: str) -> int:
    """An integer field; 0 when it is absent, empty or unreadable."""
    value = fields.get(name)
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def attempts_made(fields: dict[str, str]) -> int:
    """Attempts finished: `attemptsMade` (older BullMQ) before `atm`, as bullmq's Job.fromJSON."""
    return int_field(fields, "attemptsMade") or int_field(fields, "atm")


def attempts_started(fields: dict[str, str]) -> int:
    return int_field(fields, "ats")


def max_attempts(opts: Any) -> int:
    """A job's `attempts` option (decoded `opts`); 1 when it has none."""
    return int(opts.get("attempts") or 1) if isinstance(opts, dict) else 1

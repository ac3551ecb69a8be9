"""Idempotency-Key for POST routes (IETF draft): claim atomically, store the answer, replay it.

A record lives at `keys.idempotency(client_id, route, key)`, so two clients' keys never meet:
- `{"state": "pending", "fp": ...}` with a short lease while the first request runs
  (a concurrent request with the key gets 409; a crashed handler frees it when the
  lease ends);
- `{"state": "done", "fp": ..., "status", "headers", "body"}` for 24 h afterwards.
Only 2xx answers are stored: a rejected request leaves the key free to use again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from errand.api.caller import Caller
from errand.api.deps import Services
from errand.errors import FieldError, IdempotencyInProgress, IdempotencyMismatch, InvalidInput

log = logging.getLogger("errand.api")

HEADER = "idempotency-key"
PENDING_LEASE_S = 60
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"  # the OpenAPI document publishes it too
_KEY_RULE = re.compile(KEY_PATTERN)
_REPLAYED_HEADERS = ("location", "retry-after", "content-type")

# Delete the claim only if it is still this request's (token match).
_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if raw and string.find(raw, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fingerprint(body: dict[str, Any]) -> str:
    """Digest of the body's canonical JSON value (keys sorted), so key order does not matter."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _checked_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    return None if key is None else checked_key(key, "Idempotency-Key")


async def idempotent(
    request: Request,
    svc: Services,
    caller: Caller,
    route: str,
    body: dict[str, Any],
    handle: Callable[[], Awaitable[Response]],
) -> Response:
    """Run `handle` at most once per Idempotency-Key and body; replay its stored answer after.

    Raises IdempotencyInProgress (409) while the first request with the key runs,
    IdempotencyMismatch (422) when the key was used with another body.
    """
    key = _checked_key(request)
    if key is None:
        return await handle()
    redis = svc.redis
    record_key = svc.queues.keys.idempotency(caller.client_id, route, key)
    fp = fingerprint(body)
    token = secrets.token_hex(8)
    claim = orjson.dumps({"state": "pending", "fp": fp, "token": token})
    for _ in range(3):
        if await redis.set(record_key, claim, nx=True, ex=PENDING_LEASE_S):
            return await _run_and_store(svc, record_key, token, fp, handle)
        raw = await redis.get(record_key)
        if raw is not None:
            return _answer_from_record(orjson.loads(raw), fp)
    raise IdempotencyInProgress("the first request with this Idempotency-Key is still running")


def mismatch(field: str = "Idempotency-Key") -> IdempotencyMismatch:
    return IdempotencyMismatch(
        "this Idempotency-Key was used with a different request body",
        [FieldError(field, "already used with a different body")],
    )


def _answer_from_record(record: dict[str, Any], fp: str) -> Response:
    if record.get("fp") != fp:
        raise mismatch()
    if record.get("state") != "done":
        raise IdempotencyInProgress(
            "the first request with this Idempotency-Key has no stored answer: it is still "
            "running, or it made its job while the store was full (GET /jobs lists it)"
        )
    return Response(record["body"].encode(), record["status"], headers=record["headers"])


async def _run_and_store(
    svc: Services,
    record_key: str,
    token: str,
    fp: str,
    handle: Callable[[], Awaitable[Response]],
) -> Response:
    redis = svc.redis
    try:
        response = await handle()
    except BaseException:
        await redis.eval(_RELEASE, 1, record_key, token)
        raise
    if not 200 <= response.status_code < 300:
        await redis.eval(_RELEASE, 1, record_key, token)
        return response
    ttl = svc.settings.idempotency_ttl_seconds
    await store_answers(redis, [(record_key, done_record(response, fp))], ttl)
    return response


async def store_answers(redis: Any, records: list[tuple[str, bytes]], ttl_s: int) -> None:
    """Keep the answers of requests whose jobs were made, for replays.

    The jobs exist, so a record the store refuses (full: SET is refused under
    maxmemory) must not turn their 2xx into an error: the client would retry and get a
    second job. Such a key keeps its pending claim for the record's whole life instead
    (EXPIRE is allowed on a full store): a retry with it gets 409, never a second job.
    """
    pipe = redis.pipeline(transaction=False)
    for record_key, record in records:
        pipe.set(record_key, record, ex=ttl_s)
    replies = await pipe.execute(raise_on_error=False)
    failed = [
        (key, r) for (key, _), r in zip(records, replies, strict=True) if isinstance(r, Exception)
    ]
    if not failed:
        return
    log.warning("%d idempotency answer(s) not stored: %s", len(failed), failed[0][1])
    unstored = [key for key, _ in failed]
    pipe = redis.pipeline(transaction=False)
    for record_key in unstored:
        pipe.expire(record_key, ttl_s)
    await pipe.execute(raise_on_error=False)


def done_record(response: Response, fp: str) -> bytes:
    """The stored answer of a key's first request, replayed byte for byte afterwards."""
    headers = {name: value for name, value in response.headers.items() if name in _REPLAYED_HEADERS}
    record = {
        "state": "done",
        "fp": fp,
        "status": response.status_code,
        "headers": headers,
        "body": bytes(response.body).decode(),
    }
    return orjson.dumps(record)


def checked_key(value: object, field: str = "idempotencyKey") -> str:
    """An Idempotency-Key given in a body. Raises InvalidInput unless it is 1-255 printable
    ASCII characters."""
    if not isinstance(value, str) or not _KEY_RULE.match(value):
        raise InvalidInput(
            f"the {field} is not 1-255 printable ASCII characters",
            [FieldError(field, "must be 1-255 printable ASCII characters")],
        )
    return value


async def claim_many(
    redis: Any, record_keys: list[str], fps: list[str]
) -> tuple[str, list[dict[str, Any] | None]]:
    """Claim many keys at once (two round trips at most): (token, per key None when this
    call claimed it, else the record that holds it)."""
    token = secrets.token_hex(8)
    pipe = redis.pipeline(transaction=False)
    for record_key, fp in zip(record_keys, fps, strict=True):
        claim = orjson.dumps({"state": "pending", "fp": fp, "token": token})
        pipe.set(record_key, claim, nx=True, ex=PENDING_LEASE_S)
    claimed = await pipe.execute()
    held: list[dict[str, Any] | None] = [None] * len(record_keys)
    taken = [i for i, ok in enumerate(claimed) if not ok]
    if taken:
        pipe = redis.pipeline(transaction=False)
        for i in taken:
            pipe.get(record_keys[i])
        for i, raw in zip(taken, await pipe.execute(), strict=True):
            # gone in between (its first request failed): answer as still running
            held[i] = orjson.loads(raw) if raw is not None else {"state": "pending"}
    return token, held


def replayed_answer(record: dict[str, Any], fp: str) -> dict[str, Any]:
    """The JSON answer a claimed key's record holds. Raises IdempotencyMismatch (another
    body) or IdempotencyInProgress (its first request is still running)."""
    if record.get("fp") != fp:
        raise mismatch("idempotencyKey")
    response = _answer_from_record(record, fp)
    answer: dict[str, Any] = orjson.loads(response.body)
    return answer


async def release_many(redis: Any, record_keys: list[str], token: str) -> None:
    """Free keys claimed with `token` whose request was refused."""
    for record_key in record_keys:
        await redis.eval(_RELEASE, 1, record_key, token)

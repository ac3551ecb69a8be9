"""POST /notifications/batch: up to 1,000 notifications in one request, each on its own.

Every item is validated first; the valid ones are then claimed (their
`idempotencyKey`, in the scope of POST /notifications' Idempotency-Key header),
counted for their recipients' caps (one script call), added with their index entries
(`JobQueues.add_many`: MULTIs of 25 jobs, one round trip), and their answers stored
for replay: a few round trips for the whole batch. A refused item gets its own
problem document and does not stop the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.api import idempotency
from errand.api.caller import Caller, current_caller
from errand.api.deps import Services, services
from errand.api.gate import ClientRoute
from errand.api.http.body import parse_json_object, read_body, validate_body
from errand.api.http.problems import errand_problem, error_response
from errand.api.http.responses import json_response
from errand.api.polling import accepted, check_room
from errand.api.routes._openapi import json_body, problem
from errand.api.routes.notifications import recipient_limited
from errand.api.schemas import BatchCreate, BatchResults, NotificationCreate
from errand.errors import ErrandError, FieldError, InvalidInput, MalformedBody
from errand.jobids import QueueName
from errand.queue.producers import NewNotification, notification_specs
from errand.webhooks.ssrf import check_webhook_destination

router = APIRouter(tags=["notifications"], route_class=ClientRoute)

MAX_ITEMS = 1000
ROUTE_SCOPE = "notifications"  # the Idempotency-Key scope of POST /notifications


@dataclass
class _Item:
    """A valid item on its way: its notification, and its key's record and fingerprint."""

    index: int
    note: NewNotification
    record_key: str | None = None
    fp: str = ""


@router.post(
    "/notifications/batch",
    openapi_extra=json_body(BatchCreate),
    responses={
        200: {"model": BatchResults, "description": "One result per item, in request order."},
        **problem(413, "The body is over the batch limit (1 MiB; ERRAND_MAX_BATCH_BYTES)."),
    },
)
async def create_batch(
    request: Request, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Queue up to 1,000 notifications; one result per item, in request order."""
    raw = await read_body(request.scope["headers"], request.receive, svc.settings.max_batch_bytes)
    items = batch_items(parse_json_object(raw))
    return json_response({"items": await accept_batch(svc, caller, items)}, 200)


def batch_items(body: dict[str, Any]) -> list[Any]:
    """The `items` list. Raises InvalidInput when it is missing, empty or too long."""
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput(
            "the batch breaks the rules below",
            [FieldError("items", f"must be a list of 1-{MAX_ITEMS} notifications")],
        )
    return items


async def accept_batch(svc: Services, caller: Caller, items: list[Any]) -> list[dict[str, Any]]:
    """One result per item: its 202 answer (new or replayed) or its problem document."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    valid: list[_Item] = []
    for index, item in enumerate(items):
        try:
            valid.append(_validated(svc, caller, index, item))
        except ErrandError as err:
            results[index] = refused(err)
    valid = await _checked_webhooks(svc, valid, results)
    await check_room(svc, QueueName.NOTIFICATIONS)
    claims = await _claim(svc, valid, results)
    await recipient_cap_refusals(svc, caller, claims, results)
    try:
        specs = notification_specs(svc.queues, caller.client_id, [i.note for i in claims.fresh])
        outcomes = await svc.queues.add_each(QueueName.NOTIFICATIONS, specs)
    except BaseException:
        await idempotency.release_many(svc.redis, claims.record_keys(), claims.token)
        raise
    job_ids = await _refuse_unmade(svc, claims, outcomes, results)
    await _store(svc, claims.fresh, job_ids, results)
    for later, first in claims.repeats:
        results[later.index] = _repeat(later, first, results[first.index])
    return [result for result in results if result is not None]


def refused(err: ErrandError) -> dict[str, Any]:
    """An item's result for `err`: the problem document POST /notifications would answer."""
    response = errand_problem(err)
    return {"status": response.status_code, "problem": orjson.loads(response.body)}


def _validated(svc: Services, caller: Caller, index: int, item: Any) -> _Item:
    """Raises MalformedBody for an item that is not an object, InvalidInput for a bad one."""
    if not isinstance(item, dict):
        raise MalformedBody("each item must be a JSON object")
    body = dict(item)
    key = body.pop("idempotencyKey", None)
    note = validate_body(NotificationCreate, body)
    valid = _Item(index, NewNotification(note.type, note.userId, note.webhookUrl, note.timing()))
    if key is not None:
        key = idempotency.checked_key(key)
        valid.record_key = svc.queues.keys.idempotency(caller.client_id, ROUTE_SCOPE, key)
        valid.fp = idempotency.fingerprint(body)
    return valid


async def _checked_webhooks(
    svc: Services, items: list[_Item], results: list[dict[str, Any] | None]
) -> list[_Item]:
    """The items whose webhookUrl passes the destination check (each URL checked once)."""
    urls = {item.note.webhook_url for item in items if item.note.webhook_url}
    allow = svc.settings.webhook_allow_private
    checks = await asyncio.gather(
        *(check_webhook_destination(url, allow_private=allow) for url in urls),
        return_exceptions=True,
    )
    failed = {url: err for url, err in zip(urls, checks, strict=True) if err is not None}
    for err in failed.values():
        if not isinstance(err, ErrandError):
            raise err
    return _keep(items, results, lambda item: failed.get(item.note.webhook_url or ""))


async def recipient_cap_refusals(
    svc: Services, caller: Caller, claims: _Claims, results: list[dict[str, Any] | None]
) -> None:
    """The per-recipient cap, item by item in one call: a batch is one request for the rate
    limit, but every item it creates counts for its userId's cap (replays were answered
    already and do not). An over-cap item gets its 429 result and frees its idempotency key."""
    cap = caller.notify_per_user_per_hour
    users = [item.note.user_id for item in claims.fresh]
    waits = await svc.gate.limits.admit_recipients(caller.client_id, users, cap)
    kept, freed = [], []
    for item, wait_s in zip(claims.fresh, waits, strict=True):
        if not wait_s:
            kept.append(item)
            continue
        results[item.index] = refused(recipient_limited(cap, wait_s))
        if item.record_key is not None:
            freed.append(item.record_key)
    if freed:
        await idempotency.release_many(svc.redis, freed, claims.token)
    claims.fresh = kept


def _keep(
    items: list[_Item],
    results: list[dict[str, Any] | None],
    error_of: Any,
) -> list[_Item]:
    kept = []
    for item in items:
        err = error_of(item)
        if err is None:
            kept.append(item)
        else:
            results[item.index] = refused(err)
    return kept


@dataclass
class _Claims:
    token: str
    fresh: list[_Item]  # to create: without a key, or with one this batch claimed
    repeats: list[tuple[_Item, _Item]]  # (later item, first item) with the same key

    def record_keys(self) -> list[str]:
        return [item.record_key for item in self.fresh if item.record_key is not None]


async def _claim(
    svc: Services, items: list[_Item], results: list[dict[str, Any] | None]
) -> _Claims:
    """Claim the items' keys; answer those whose key was used before (replay, 422 or 409)."""
    firsts: dict[str, _Item] = {}
    repeats = []
    for item in items:
        if item.record_key is None:
            continue
        if item.record_key in firsts:
            repeats.append((item, firsts[item.record_key]))
        else:
            firsts[item.record_key] = item
    keyed = list(firsts.values())
    token, held = await idempotency.claim_many(
        svc.redis, [i.record_key or "" for i in keyed], [i.fp for i in keyed]
    )
    taken = {id(i): record for i, record in zip(keyed, held, strict=True) if record is not None}
    fresh = []
    for item in items:
        record = taken.get(id(item))
        if item.record_key is not None and firsts.get(item.record_key) is not item:
            continue
        if record is None:
            fresh.append(item)
            continue
        try:
            results[item.index] = _replayed(idempotency.replayed_answer(record, item.fp))
        except ErrandError as err:
            results[item.index] = refused(err)
    return _Claims(token, fresh, repeats)


async def _refuse_unmade(
    svc: Services, claims: _Claims, outcomes: list[str | Exception], results: list[Any]
) -> list[str]:
    """Items whose MULTI the store refused (e.g. full: nothing of it made) get that error's
    problem as their result and free their keys; the jobs of the other MULTIs stand."""
    made, freed = [], []
    for item, outcome in zip(claims.fresh, outcomes, strict=True):
        if not isinstance(outcome, Exception):
            made.append((item, outcome))
            continue
        response = error_response(outcome, "POST /notifications/batch")
        results[item.index] = {
            "status": response.status_code,
            "problem": orjson.loads(response.body),
        }
        if item.record_key is not None:
            freed.append(item.record_key)
    if freed:
        await idempotency.release_many(svc.redis, freed, claims.token)
    claims.fresh = [item for item, _ in made]
    return [job_id for _, job_id in made]


async def _store(
    svc: Services, fresh: list[_Item], job_ids: list[str], results: list[dict[str, Any] | None]
) -> None:
    """Answer the created items, and keep the answer of each keyed one for replays: the
    answer POST /notifications gives, so the header route replays it byte for byte."""
    records: list[tuple[str, bytes]] = []
    for item, job_id in zip(fresh, job_ids, strict=True):
        status_url = f"/notifications/{job_id}"
        status = "scheduled" if item.note.delay_ms() > 0 else "waiting"
        content = {"jobId": job_id, "statusUrl": status_url, "status": status}
        results[item.index] = {"status": 202, "jobId": job_id, "statusUrl": status_url}
        if item.record_key is not None:
            response = accepted(svc.settings, QueueName.NOTIFICATIONS, status_url, content)
            records.append((item.record_key, idempotency.done_record(response, item.fp)))
    await idempotency.store_answers(svc.redis, records, svc.settings.idempotency_ttl_seconds)


def _replayed(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": 202,
        "jobId": answer["jobId"],
        "statusUrl": answer["statusUrl"],
        "replayed": True,
    }


def _repeat(later: _Item, first: _Item, first_result: dict[str, Any] | None) -> dict[str, Any]:
    """A key given twice in one batch: the second is a replay of the first (or a 422)."""
    if later.fp != first.fp:
        return refused(idempotency.mismatch("idempotencyKey"))
    if first_result is None or "jobId" not in first_result:
        return first_result or refused(idempotency.mismatch("idempotencyKey"))
    return {**first_result, "replayed": True}

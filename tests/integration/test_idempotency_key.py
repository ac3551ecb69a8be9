"""Idempotency-Key on both POST routes: byte-for-byte replay, 422 on a new body, 409 meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from errand.api import idempotency
from support.stack import Stack

ROUTES = {
    "/reports": {"userId": "u-idem", "reportType": "activity"},
    "/notifications": {"type": "welcome", "userId": "u-idem"},
}


async def jobs_created(stack: Stack) -> int:
    total, keys = 0, stack.keys
    for queue in ("reports", "notifications"):
        for p in range(keys.partitions):
            total += await stack.redis.llen(keys.queue(queue, "wait", p))
            total += await stack.redis.zcard(keys.queue(queue, "prioritized", p))
    return total


@pytest.fixture
async def idle(stack: Stack) -> Stack:
    await stack.stop_workers()
    return stack


@pytest.mark.parametrize("route", list(ROUTES))
async def test_same_key_same_body_replays_the_first_response(idle: Stack, route: str) -> None:
    headers = {"Idempotency-Key": "key-1"}
    first = await idle.http.post(route, json=ROUTES[route], headers=headers)
    assert first.status_code == 202
    # The same JSON value with keys in another order and other whitespace.
    reordered = "{ " + ", ".join(f'"{k}": "{v}"' for k, v in reversed(ROUTES[route].items())) + " }"
    again = await idle.http.post(
        route, content=reordered, headers={**headers, "content-type": "application/json"}
    )
    assert again.status_code == first.status_code
    assert again.content == first.content
    for name in ("location", "retry-after", "content-type", "content-length"):
        assert again.headers[name] == first.headers[name]
    assert await jobs_created(idle) == 1


@pytest.mark.parametrize("route", list(ROUTES))
async def test_same_key_different_body_is_422(idle: Stack, route: str) -> None:
    headers = {"Idempotency-Key": "key-2"}
    assert (await idle.http.post(route, json=ROUTES[route], headers=headers)).status_code == 202
    other = dict(ROUTES[route], userId="someone-else")
    reply = await idle.http.post(route, json=other, headers=headers)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert "jobId" not in reply.text
    assert await jobs_created(idle) == 1


async def test_keys_are_scoped_per_route(idle: Stack) -> None:
    headers = {"Idempotency-Key": "shared"}
    for route, body in ROUTES.items():
        assert (await idle.http.post(route, json=body, headers=headers)).status_code == 202
    assert await jobs_created(idle) == 2


async def test_same_key_while_the_first_is_running_is_409(idle: Stack) -> None:
    # A claim is what a first request holds while it runs.
    assert idle.client is not None
    key = idle.keys.idempotency(idle.client.client_id, "notifications", "busy")
    fp = idempotency.fingerprint(ROUTES["/notifications"])
    import orjson

    await idle.redis.set(key, orjson.dumps({"state": "pending", "fp": fp, "token": "t"}), ex=30)
    reply = await idle.http.post(
        "/notifications", json=ROUTES["/notifications"], headers={"Idempotency-Key": "busy"}
    )
    assert reply.status_code == 409
    assert await jobs_created(idle) == 0


async def test_concurrent_requests_with_one_key_create_one_job(idle: Stack) -> None:
    headers = {"Idempotency-Key": "race"}
    replies = await asyncio.gather(
        *(
            idle.http.post("/notifications", json=ROUTES["/notifications"], headers=headers)
            for _ in range(30)
        )
    )
    codes = sorted(r.status_code for r in replies)
    assert set(codes) <= {202, 409}
    ok = {r.json()["jobId"] for r in replies if r.status_code == 202}
    assert len(ok) == 1
    assert await jobs_created(idle) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_bad_keys_are_422(idle: Stack, key: str) -> None:
    reply = await idle.http.post(
        "/reports", json=ROUTES["/reports"], headers={"Idempotency-Key": key.encode("utf-8")}
    )
    assert reply.status_code == 422
    assert await jobs_created(idle) == 0


async def test_a_rejected_request_does_not_burn_the_key(idle: Stack) -> None:
    headers = {"Idempotency-Key": "fixme"}
    bad = await idle.http.post("/reports", json={"userId": "u"}, headers=headers)
    assert bad.status_code == 422
    good = await idle.http.post(
        "/reports", json={"userId": "u", "reportType": "a"}, headers=headers
    )
    assert good.status_code == 202


async def test_record_expires_after_the_ttl(idle: Stack) -> None:
    headers = {"Idempotency-Key": "ttl"}
    await idle.http.post("/reports", json=ROUTES["/reports"], headers=headers)
    assert idle.client is not None
    ttl = await idle.redis.ttl(idle.keys.idempotency(idle.client.client_id, "reports", "ttl"))
    assert 86000 < ttl <= 86400

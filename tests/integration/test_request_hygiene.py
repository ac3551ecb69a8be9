"""Request hygiene over real HTTP: JSON bodies only (415), nesting at most 32 levels deep
(400), no control characters in a webhookUrl (422), and a full store answers 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import exceptions as redis_errors

from errand.api import idempotency
from errand.server.embedded import EmbeddedValkey
from support.stack import Stack, run_stack
from support.stack import test_settings as settings_for

REPORT = b'{"userId": "u-ct", "reportType": "activity"}'
NOTIFICATION = b'{"type": "welcome", "userId": "u-ct"}'
NOT_JSON_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonp",
    "text/json",
    None,
]
JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "application/problem+json",
    "application/vnd.errand+json; version=2",
]


@pytest.fixture
async def stack(stack: Stack) -> Stack:
    """No worker: a job stays where its POST put it, so counts say what was created."""
    await stack.stop_workers()
    return stack


async def waiting(stack: Stack) -> dict[str, int]:
    queues = (await stack.http.get("/admin/queues", headers=stack.admin)).json()["queues"]
    return {q["name"]: q["waiting"] for q in queues}


def nested(levels: int) -> bytes:
    """A report body whose objects and arrays nest `levels` deep (the body itself is 1)."""
    inner = b'{"a": ' * (levels - 2) + b"[]" + b"}" * (levels - 2)
    return b'{"userId": "deep", "reportType": "activity", "pad": ' + inner + b"}"


@pytest.mark.parametrize("idempotency_key", [None, "ct-key"])
async def test_a_body_not_declared_json_is_415_and_creates_nothing(
    stack: Stack, idempotency_key: str | None
) -> None:
    key = {"idempotency-key": idempotency_key} if idempotency_key else {}
    for content_type in NOT_JSON_TYPES:
        headers = {**key, **({"content-type": content_type} if content_type else {})}
        for route, raw in (("/reports", REPORT), ("/notifications", NOTIFICATION)):
            reply = await stack.http.post(route, content=raw, headers=headers)
            assert reply.status_code == 415, (content_type, reply.text)
            problem = reply.json()
            assert reply.headers["content-type"] == "application/problem+json"
            assert problem["status"] == 415 and problem["type"].endswith("unsupported-media-type")
    big = await stack.http.post(  # the content type is checked first, before the size
        "/reports", content=b"x" * 70_000, headers={**key, "content-type": "text/plain"}
    )
    assert big.status_code == 415, big.text
    assert await waiting(stack) == {"reports": 0, "notifications": 0, "webhooks": 0}
    if idempotency_key:  # the refused requests did not claim the key
        again = await stack.http.post(
            "/reports", content=REPORT, headers={**key, "content-type": "application/json"}
        )
        assert again.status_code == 202


async def test_json_and_any_application_plus_json_are_accepted(stack: Stack) -> None:
    for content_type in JSON_TYPES:
        body = f'{{"type": "welcome", "userId": "{content_type}"}}'.encode()
        reply = await stack.http.post(
            "/notifications", content=body, headers={"content-type": content_type}
        )
        assert reply.status_code == 202, (content_type, reply.text)
    assert (await waiting(stack))["notifications"] == len(JSON_TYPES)


async def test_a_route_without_a_body_ignores_its_content_type(stack: Stack) -> None:
    reply = await stack.http.post(
        f"/admin/dlq/rep_{'0' * 32}/retry",
        content=b"anything",
        headers={**stack.admin, "content-type": "text/plain"},
    )
    assert reply.status_code == 404, reply.text


@pytest.mark.parametrize("idempotency_key", [None, "deep-key"])
async def test_json_nested_deeper_than_32_levels_is_400(
    stack: Stack, idempotency_key: str | None
) -> None:
    headers = {"content-type": "application/json"}
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    for levels in (33, 300, 5000):
        reply = await stack.http.post("/reports", content=nested(levels), headers=headers)
        assert reply.status_code == 400, (levels, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
    assert await waiting(stack) == {"reports": 0, "notifications": 0, "webhooks": 0}
    accepted = await stack.http.post("/reports", content=nested(32), headers=headers)
    assert accepted.status_code == 202, accepted.text


def urls_with(char: str) -> list[str]:
    return [
        f"http://exa{char}mple.com/hook",
        f"http://example.com/ho{char}ok",
        f"http://example.com/hook{char}",
    ]


@pytest.mark.parametrize("char", ["\t", "\r", "\n", "\x00", "\x7f", "\x1b"])
async def test_control_characters_in_a_webhook_url_are_422(stack: Stack, char: str) -> None:
    for url in urls_with(char):
        for route, body in (
            ("/reports", {"userId": "u-cc", "reportType": "activity", "webhookUrl": url}),
            ("/notifications", {"type": "welcome", "userId": "u-cc", "webhookUrl": url}),
        ):
            reply = await stack.http.post(route, json=body)
            assert reply.status_code == 422, (url, reply.text)
            [error] = reply.json()["errors"]
            assert error["field"] == "webhookUrl" and "control character" in error["message"]
    assert await waiting(stack) == {"reports": 0, "notifications": 0, "webhooks": 0}
    fine = await stack.http.post(
        "/reports",
        json={"userId": "u-cc", "reportType": "a", "webhookUrl": "http://127.0.0.1:9/hook"},
    )
    assert fine.status_code == 202, fine.text


@pytest.fixture
async def tiny_store(tmp_path: Path) -> AsyncIterator[Stack]:
    """An API on a Valkey of its own with a 3 MB maxmemory (noeviction), and no worker."""
    valkey = EmbeddedValkey(tmp_path / "valkey", maxmemory="3mb")
    valkey.start()
    try:
        async with run_stack(settings_for(valkey.url), with_worker=False) as stack:
            yield stack
    finally:
        valkey.stop()


async def test_a_flood_into_a_full_store_ends_in_503s_and_nothing_half_made(
    tiny_store: Stack,
) -> None:
    stack = tiny_store
    hook = "http://127.0.0.1:9/" + "h" * 2000  # big jobs: the store fills in ~1,000
    replies: list[httpx.Response] = []

    async def post(n: int) -> httpx.Response:
        body: dict[str, Any] = {"type": "welcome", "userId": f"flood-{n}", "webhookUrl": hook}
        headers = {"idempotency-key": f"flood-{n}"} if n % 3 == 0 else {}
        return await stack.http.post("/notifications", json=body, headers=headers)

    sent = 0
    while sum(r.status_code == 503 for r in replies) < 50:
        assert sent < 20_000, "the store never filled up"
        replies += await asyncio.gather(*(post(sent + i) for i in range(50)))
        sent += 50
    statuses = {r.status_code for r in replies}
    assert statuses == {202, 503}, statuses
    refused = [r for r in replies if r.status_code == 503]
    for reply in refused:
        assert reply.headers["content-type"] == "application/problem+json"
        assert int(reply.headers["retry-after"]) >= 1
        assert reply.json()["type"].endswith("store-full")
    assert (await stack.http.get("/readyz")).status_code == 200
    created = [r.json()["jobId"] for r in replies if r.status_code == 202]
    assert (await stack.http.get(f"/notifications/{created[-1]}")).status_code == 200
    assert (await waiting(stack))["notifications"] == len(created)  # no job half-made


async def test_an_answer_a_full_store_refuses_keeps_its_key_claimed_for_its_whole_life(
    tiny_store: Stack,
) -> None:
    # The job was made, then the store filled before its answer was kept: the 202
    # stands, and the key stays claimed (a retry gets 409, never a second job).
    redis = tiny_store.redis
    claim = b'{"state": "pending", "fp": "f", "token": "t"}'
    await redis.set("idem-test", claim, ex=idempotency.PENDING_LEASE_S)
    limit = (await redis.config_get("maxmemory"))["maxmemory"]
    await redis.config_set("maxmemory", "1")  # full: every SET is refused
    try:
        with pytest.raises(redis_errors.OutOfMemoryError):
            await redis.set("idem-probe", b"x")
        await idempotency.store_answers(redis, [("idem-test", b'{"state": "done"}')], 86_400)
    finally:
        await redis.config_set("maxmemory", limit)
    assert await redis.get("idem-test") == claim.decode()
    assert await redis.ttl("idem-test") > 86_000


async def test_batches_into_a_full_store_refuse_items_whole_and_make_nothing_half(
    tiny_store: Stack,
) -> None:
    # A batch goes as MULTIs of 25 jobs: when the store fills, the refused MULTIs' items
    # get a store-full problem each and their keys are freed; the others' jobs stand.
    stack = tiny_store
    hook = "http://127.0.0.1:9/" + "h" * 2000
    accepted: list[str] = []
    full = 0
    sent = 0
    while full < 50:
        assert sent < 20_000, "the store never filled up"
        items = [
            {
                "type": "welcome",
                "userId": f"b-{sent + i}",
                "webhookUrl": hook,
                "idempotencyKey": f"b-{sent + i}",
            }
            for i in range(100)
        ]
        reply = await stack.http.post("/notifications/batch", json={"items": items})
        sent += 100
        if reply.status_code == 503:  # refused before any MULTI (the depth read, ...)
            assert reply.json()["type"].endswith(("store-full", "unavailable"))
            full += 1
            continue
        assert reply.status_code == 200
        for result in reply.json()["items"]:
            if result["status"] == 202:
                accepted.append(result["jobId"])
            else:
                assert result["status"] == 503
                assert result["problem"]["type"].endswith("store-full")
                full += 1
    assert accepted
    assert (await waiting(stack))["notifications"] == len(accepted)  # nothing half-made

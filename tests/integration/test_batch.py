"""POST /notifications/batch over real HTTP: per-item results in order, idempotency keys
shared with POST /notifications, size and shape limits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from errand.api.idempotency import fingerprint
from errand.jobids import QueueName
from support.stack import Stack
from support.waiting import wait_for


async def batch(stack: Stack, items: list[Any]) -> list[dict[str, Any]]:
    reply = await stack.http.post("/notifications/batch", json={"items": items})
    assert reply.status_code == 200, reply.text
    results: list[dict[str, Any]] = reply.json()["items"]
    assert len(results) == len(items)
    return results


async def indexed(stack: Stack) -> int:
    return int(
        await stack.redis.zcard(stack.keys.job_index(stack.client_id, QueueName.NOTIFICATIONS))
    )


async def test_a_refused_item_does_not_stop_the_others_and_order_is_kept(stack: Stack) -> None:
    items: list[Any] = [
        {"type": "welcome", "userId": "u-0"},
        {"type": "birthday", "userId": "u-1"},
        "not an object",
        {"type": "welcome", "userId": "u-3", "webhookUrl": "ftp://example.com/hook"},
        {"type": "password-reset", "userId": 4},
        {"type": "welcome", "userId": "u-5", "idempotencyKey": "\u00e9t\u00e9"},
        {"type": "order-confirmed", "userId": "u-6", "webhookUrl": None},
    ]
    results = await batch(stack, items)
    assert [r["status"] for r in results] == [202, 422, 400, 422, 202, 422, 202]
    assert results[1]["problem"]["errors"][0]["field"] == "type"
    assert results[3]["problem"]["errors"][0]["field"] == "webhookUrl"
    assert results[5]["problem"]["errors"][0]["field"] == "idempotencyKey"
    assert results[2]["problem"]["status"] == 400
    for at, user, kind in (
        (0, "u-0", "welcome"),
        (4, "4", "password-reset"),
        (6, "u-6", "order-confirmed"),
    ):
        assert results[at]["statusUrl"] == f"/notifications/{results[at]['jobId']}"
        view = (await stack.http.get(results[at]["statusUrl"])).json()
        assert (view["userId"], view["type"]) == (user, kind)
        assert view["priority"] == (1 if kind == "password-reset" else 5)
    await wait_for(
        lambda: stack.http.get(results[0]["statusUrl"]),
        lambda r: r.json()["status"] == "completed",
        what="a batch item sent",
    )
    assert await indexed(stack) == 3


async def test_a_resent_batch_creates_nothing_twice(stack: Stack) -> None:
    items = [{"type": "welcome", "userId": f"u-{i}", "idempotencyKey": f"k-{i}"} for i in range(50)]
    first = await batch(stack, items)
    again = await batch(stack, items)
    assert all(r["status"] == 202 and "replayed" not in r for r in first)
    assert [r["jobId"] for r in again] == [r["jobId"] for r in first]
    assert all(r["replayed"] is True for r in again)
    assert await indexed(stack) == 50
    # key order inside an item does not matter (the same JSON value)
    reordered = [{"idempotencyKey": "k-0", "userId": "u-0", "type": "welcome"}]
    assert (await batch(stack, reordered))[0]["jobId"] == first[0]["jobId"]


async def test_keys_are_shared_with_the_idempotency_key_header(stack: Stack) -> None:
    body = {"type": "welcome", "userId": "u-1"}
    single = await stack.http.post("/notifications", json=body, headers={"Idempotency-Key": "one"})
    [item] = await batch(stack, [{**body, "idempotencyKey": "one"}])
    assert item == {
        "status": 202,
        "jobId": single.json()["jobId"],
        "statusUrl": single.json()["statusUrl"],
        "replayed": True,
    }
    [other] = await batch(stack, [{"type": "welcome", "userId": "u-2", "idempotencyKey": "one"}])
    assert other["status"] == 422
    assert other["problem"]["errors"][0]["field"] == "idempotencyKey"

    [fresh] = await batch(stack, [{**body, "idempotencyKey": "two"}])
    replay = await stack.http.post("/notifications", json=body, headers={"Idempotency-Key": "two"})
    assert replay.status_code == 202
    assert replay.headers["location"] == fresh["statusUrl"]
    assert replay.json() == {
        "jobId": fresh["jobId"],
        "statusUrl": fresh["statusUrl"],
        "status": "waiting",
    }
    again = await stack.http.post("/notifications", json=body, headers={"Idempotency-Key": "two"})
    assert again.content == replay.content
    mismatch = await stack.http.post(
        "/notifications", json={**body, "userId": "u-9"}, headers={"Idempotency-Key": "two"}
    )
    assert mismatch.status_code == 422
    assert await indexed(stack) == 2


async def test_a_key_twice_in_one_batch(stack: Stack) -> None:
    same = {"type": "welcome", "userId": "u-1", "idempotencyKey": "dup"}
    results = await batch(
        stack, [same, {"type": "welcome", "userId": "u-2"}, same, {**same, "userId": "u-3"}]
    )
    assert [r["status"] for r in results] == [202, 202, 202, 422]
    assert results[2]["jobId"] == results[0]["jobId"] and results[2]["replayed"] is True
    assert await indexed(stack) == 2


async def test_a_key_in_flight_is_a_409_item(stack: Stack) -> None:
    record = stack.keys.idempotency(stack.client_id, "notifications", "busy")
    body = {"type": "welcome", "userId": "u-1"}
    pending = orjson.dumps({"state": "pending", "fp": fingerprint(body), "token": "t"})
    await stack.redis.set(record, pending, ex=60)
    [item] = await batch(stack, [{**body, "idempotencyKey": "busy"}])
    assert item["status"] == 409 and await indexed(stack) == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"items": None}, {"items": {}}, {"items": "x"}, {"items": []}],
)
async def test_a_batch_without_a_list_of_items_is_422(stack: Stack, body: dict[str, Any]) -> None:
    reply = await stack.http.post("/notifications/batch", json=body)
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "items"


async def test_1000_items_pass_and_1001_are_422(stack: Stack) -> None:
    items = [{"type": "welcome", "userId": f"user-{i:06d}-{'x' * 40}"} for i in range(1000)]
    assert len(orjson.dumps({"items": items})) > stack.settings.max_body_bytes  # the batch limit
    results = await batch(stack, items)
    assert all(r["status"] == 202 for r in results)
    assert len({r["jobId"] for r in results}) == 1000
    reply = await stack.http.post("/notifications/batch", json={"items": [*items, items[0]]})
    assert reply.status_code == 422
    assert await indexed(stack) == 1000


async def test_malformed_batches_are_400(stack: Stack) -> None:
    headers = {"Content-Type": "application/json"}
    for raw in (b"{", b"[]", b"\xff"):
        reply = await stack.http.post("/notifications/batch", content=raw, headers=headers)
        assert reply.status_code == 400, raw


@pytest.mark.settings(max_batch_bytes=4096)
async def test_a_batch_over_max_batch_bytes_is_413(stack: Stack) -> None:
    items = [{"type": "welcome", "userId": f"user-{i:06d}"} for i in range(100)]
    reply = await stack.http.post("/notifications/batch", json={"items": items})
    assert reply.status_code == 413
    streamed = orjson.dumps({"items": items})

    async def chunks() -> Any:
        yield streamed[:2000]
        yield streamed[2000:]

    reply = await stack.http.post(
        "/notifications/batch", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 413
    assert await indexed(stack) == 0
    assert (await batch(stack, items[:10]))[0]["status"] == 202

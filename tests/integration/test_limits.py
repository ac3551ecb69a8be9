"""Per-client limits: the rate limit shared by API processes, the per-recipient cap on
notifications, and the queue-depth cap."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from errand.access.clients import RateLimit
from errand.access.limits import DEPTH_REREAD_S, Limits
from errand.jobids import QueueName, new_job_id
from support.stack import ApiClient, Stack, serve_api

NOTE = {"type": "welcome", "userId": "u-lim"}


@pytest.fixture
async def stack(stack: Stack) -> Stack:
    """No worker: jobs stay queued, so counts are exact."""
    await stack.stop_workers()
    return stack


@pytest.fixture
async def second_api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process's worth of state (its own app, gate and key cache) on the same
    store, as a second `errand api` process would be."""
    async with (
        serve_api(stack.settings) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        yield http


async def _waiting(stack: Stack, queue: QueueName) -> int:
    return len(await stack.members(queue, "wait")) + len(await stack.members(queue, "prioritized"))


def _check_headers(reply: httpx.Response, burst: int) -> None:
    assert reply.headers["ratelimit-limit"] == str(burst)
    remaining = int(reply.headers["ratelimit-remaining"])
    reset = int(reply.headers["ratelimit-reset"])
    assert 0 <= remaining < burst  # this request took a token
    assert reset >= 1  # so the bucket is not full


async def test_the_bucket_holds_across_two_api_processes(
    stack: Stack, second_api: httpx.AsyncClient
) -> None:
    limited = await stack.new_client("limited", rateLimit={"perSecond": 1, "burst": 5})
    apis = [stack.http, second_api]
    started = time.monotonic()
    accepted = refused = 0
    n = 0
    while time.monotonic() - started < 2.5:
        reply = await apis[n % 2].post("/notifications", json=NOTE, headers=limited.headers)
        n += 1
        _check_headers(reply, 5)
        if reply.status_code == 202:
            accepted += 1
        else:
            assert reply.status_code == 429, reply.text
            assert reply.json()["type"] == "urn:errand:problem:rate-limited"
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.headers["ratelimit-remaining"] == "0"
            refused += 1
        allowed = 5 + math.floor(time.monotonic() - started) + 1  # +1: a refill in flight
        assert accepted <= allowed, (accepted, time.monotonic() - started)
        await asyncio.sleep(0.02)
    assert accepted >= 5 and refused > 0
    assert await _waiting(stack, QueueName.NOTIFICATIONS) == accepted  # a 429 makes nothing


async def test_headers_count_down_and_every_client_route_counts(stack: Stack) -> None:
    limited = await stack.new_client("limited", rateLimit={"perSecond": 0.01, "burst": 3})
    unknown = new_job_id(QueueName.REPORTS)
    replies = [
        await stack.http.get(f"/jobs/{unknown}", headers=limited.headers),  # a 404 counts
        await stack.http.get(f"/jobs/{unknown}?wait=0.1", headers=limited.headers),
        await stack.http.post("/reports", json={"userId": "u"}, headers=limited.headers),  # 422
        await stack.http.get(f"/jobs/{unknown}", headers=limited.headers),
    ]
    assert [r.status_code for r in replies] == [404, 404, 422, 429]
    assert [r.headers["ratelimit-remaining"] for r in replies] == ["2", "1", "0", "0"]
    assert all(r.headers["ratelimit-limit"] == "3" for r in replies)
    # 3 tokens at 0.01/s: the bucket is full again in about 300 s.
    assert 290 <= int(replies[-1].headers["ratelimit-reset"]) <= 300
    assert 90 <= int(replies[-1].headers["retry-after"]) <= 100
    other = await stack.new_client("other", rateLimit={"perSecond": 0.01, "burst": 3})
    assert (await stack.http.get(f"/jobs/{unknown}", headers=other.headers)).status_code == 404


async def test_a_client_with_no_limit_gets_no_ratelimit_headers(stack: Stack) -> None:
    reply = await stack.http.post("/notifications", json=NOTE)  # the stack's client: no limit
    assert reply.status_code == 202 and "ratelimit-limit" not in reply.headers


@pytest.mark.settings(rate_limit_per_second=0.01, rate_limit_burst=2)
async def test_server_defaults_apply_to_a_client_without_its_own(stack: Stack) -> None:
    plain = await stack.new_client("plain")
    codes = [
        (await stack.http.post("/notifications", json=NOTE, headers=plain.headers)).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]


@pytest.mark.settings(auth="none", rate_limit_per_second=0.01, rate_limit_burst=1)
async def test_with_auth_none_the_limits_apply_to_anonymous(stack: Stack) -> None:
    first = await stack.http.post("/notifications", json=NOTE)
    second = await stack.http.post("/notifications", json=NOTE)
    assert (first.status_code, second.status_code) == (202, 429)
    assert first.headers["ratelimit-limit"] == "1"


async def _notify(
    stack: Stack, client: ApiClient, user: str, key: str | None = None
) -> httpx.Response:
    headers = dict(client.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"type": "password-reset", "userId": user}
    return await stack.http.post("/notifications", json=body, headers=headers)


async def test_the_per_recipient_cap_and_replays_that_do_not_count(stack: Stack) -> None:
    shop = await stack.new_client("shop", notifyPerUserPerHour=2)
    assert (await _notify(stack, shop, "u-bomb", key="k-1")).status_code == 202
    replay = await _notify(stack, shop, "u-bomb", key="k-1")
    assert replay.status_code == 202  # a replay: the first answer again, not counted
    assert (await _notify(stack, shop, "u-bomb")).status_code == 202
    over = await _notify(stack, shop, "u-bomb")
    assert over.status_code == 429
    assert over.json()["type"] == "urn:errand:problem:recipient-limit"
    assert 3500 <= int(over.headers["retry-after"]) <= 3600
    assert (await _notify(stack, shop, "u-bomb", key="k-2")).status_code == 429
    assert await _waiting(stack, QueueName.NOTIFICATIONS) == 2
    # Another user, and another client for the same user, have their own windows.
    assert (await _notify(stack, shop, "u-other")).status_code == 202
    other = await stack.new_client("other", notifyPerUserPerHour=1)
    assert (await _notify(stack, other, "u-bomb")).status_code == 202
    # Reports are not notifications: no cap.
    report = {"userId": "u-bomb", "reportType": "activity"}
    assert (await stack.http.post("/reports", json=report, headers=shop.headers)).status_code == 202


async def test_a_batchs_items_count_for_the_recipient_cap_in_order(stack: Stack) -> None:
    shop = await stack.new_client("shop", notifyPerUserPerHour=2)
    assert (await _notify(stack, shop, "u-a")).status_code == 202
    users = ["u-a", "u-a", "u-b", "u-b", "u-b", "u-a", "u-c"]
    items: list[dict[str, str]] = [{"type": "welcome", "userId": user} for user in users]
    items[4]["idempotencyKey"] = "k-over"
    batch = await stack.http.post(
        "/notifications/batch", json={"items": items}, headers=shop.headers
    )
    assert batch.status_code == 200
    results = batch.json()["items"]
    assert [r["status"] for r in results] == [202, 429, 202, 202, 429, 429, 202]
    for over in (results[1], results[4], results[5]):
        assert over["problem"]["type"] == "urn:errand:problem:recipient-limit"
        assert "in 3" in over["problem"]["detail"]  # about an hour: 3,5xx-3,600 s
    assert await _waiting(stack, QueueName.NOTIFICATIONS) == 5
    # the refused keyed item freed its key; the window of u-b holds exactly two
    record = stack.keys.idempotency(shop.client_id, "notifications", "k-over")
    assert not await stack.redis.exists(record)
    window = stack.keys.recipient_window(shop.client_id, "u-b")
    assert await stack.redis.zcard(window) == 2
    assert 0 < await stack.redis.pttl(window) <= 3_600_000


@pytest.mark.settings(notify_per_user_per_hour=1)
async def test_the_servers_recipient_cap_is_the_default(stack: Stack) -> None:
    plain = await stack.new_client("plain")
    assert (await _notify(stack, plain, "u-d")).status_code == 202
    assert (await _notify(stack, plain, "u-d")).status_code == 429


@pytest.mark.settings(max_queue_depth=2)
async def test_a_full_queue_refuses_a_post_with_503_and_creates_nothing(stack: Stack) -> None:
    for n in range(2):
        posted = await stack.http.post("/notifications", json=NOTE)
        assert posted.status_code == 202
        body = {"userId": f"u-{n}", "reportType": "activity"}
        assert (await stack.http.post("/reports", json=body)).status_code == 202
    full = await stack.http.post("/notifications", json=NOTE)
    assert full.status_code == 503
    assert full.json()["type"] == "urn:errand:problem:queue-full"
    assert int(full.headers["retry-after"]) >= 1
    reports_full = await stack.http.post("/reports", json={"userId": "u-9", "reportType": "a"})
    assert reports_full.status_code == 503
    assert await _waiting(stack, QueueName.NOTIFICATIONS) == 2
    assert await _waiting(stack, QueueName.REPORTS) == 2
    assert (await stack.http.get(posted.headers["location"])).status_code == 200  # reads go on


class _CountedLimits(Limits):
    """The real Limits on the stack's store, counting its depth reads."""

    reads = 0

    async def _queue_depth(self, queue: QueueName) -> int:
        self.reads += 1
        return await super()._queue_depth(queue)


async def test_concurrent_posts_near_the_cap_share_one_depth_read(stack: Stack) -> None:
    assert (await stack.http.post("/notifications", json=NOTE)).status_code == 202
    limits = _CountedLimits(stack.redis, stack.keys, max_queue_depth=2)
    answers = await asyncio.gather(*(limits.queue_full(QueueName.NOTIFICATIONS) for _ in range(20)))
    assert answers == [False] * 20  # one job waits: room for one more
    assert limits.reads == 1
    assert (await stack.http.post("/notifications", json=NOTE)).status_code == 202
    assert await limits.queue_full(QueueName.NOTIFICATIONS)  # near the cap: read every time
    assert limits.reads == 2


async def test_far_below_the_cap_a_stale_depth_answers_while_one_read_refreshes_it(
    stack: Stack,
) -> None:
    limits = _CountedLimits(stack.redis, stack.keys, max_queue_depth=1_000_000)
    assert not await limits.queue_full(QueueName.NOTIFICATIONS)
    assert limits.reads == 1
    assert not await limits.queue_full(QueueName.NOTIFICATIONS)
    assert limits.reads == 1  # fresh: no read
    assert (await stack.http.post("/notifications", json=NOTE)).status_code == 202
    limits._depth_seen[QueueName.NOTIFICATIONS] = (time.monotonic() - DEPTH_REREAD_S, 0)
    answers = await asyncio.gather(*(limits.queue_full(QueueName.NOTIFICATIONS) for _ in range(20)))
    assert answers == [False] * 20
    deadline = time.monotonic() + 10
    while limits._depth_seen[QueueName.NOTIFICATIONS][1] != 1:
        assert time.monotonic() < deadline, "the refresh never landed"
        await asyncio.sleep(0.01)
    assert limits.reads == 2


async def test_a_busy_client_spends_tokens_held_ahead_and_never_more_than_the_bucket_gave(
    stack: Stack,
) -> None:
    limits = Limits(stack.redis, stack.keys, max_queue_depth=0)
    rate = RateLimit(0.001, 64)  # 64 tokens, hardly any refill; holds of 4 above 32 left
    quotas = [await limits.take("busy", rate) for _ in range(70)]
    assert all(q is not None for q in quotas)
    admitted = [q for q in quotas if q is not None and q.taken]
    assert len(admitted) == 64  # every token used, none invented, then refused
    assert [q.remaining for q in admitted] == list(range(63, -1, -1))
    bucket = await stack.redis.hget(stack.keys.rate_bucket("busy"), "tokens")
    assert float(bucket) < 1
    calls = await _take_calls(stack, lambda: limits.take("busy2", rate), 40)
    assert calls < 20  # the busy client's takes mostly came from its hold


async def _take_calls(stack: Stack, take: Any, n: int) -> int:
    """How many of `n` takes reached the bucket (each one that does lowers its tokens)."""
    before, seen = -1.0, 0
    for _ in range(n):
        await take()
        tokens = float(await stack.redis.hget(stack.keys.rate_bucket("busy2"), "tokens"))
        seen += tokens != before
        before = tokens
    return seen


async def test_concurrent_requests_of_a_busy_client_wait_for_one_take_ahead(stack: Stack) -> None:
    limits = _CountedLimits(stack.redis, stack.keys, max_queue_depth=0)
    takes = 0
    bucket_take = limits._take_from_bucket

    async def counted(client_id: str, rate: RateLimit, ahead: int) -> Any:
        nonlocal takes
        takes += 1
        return await bucket_take(client_id, rate, ahead)

    limits._take_from_bucket = counted  # type: ignore[method-assign]
    rate = RateLimit(0.001, 10_000)  # holds of 32
    await limits.take("crowd", rate)
    quotas = await asyncio.gather(*(limits.take("crowd", rate) for _ in range(64)))
    assert all(q is not None and q.taken for q in quotas)
    assert takes <= 4  # the first, then about one per 33 requests
    left = float(await stack.redis.hget(stack.keys.rate_bucket("crowd"), "tokens"))
    assert 10_000 - 1 - 64 - 32 <= left <= 10_000 - 1 - 64

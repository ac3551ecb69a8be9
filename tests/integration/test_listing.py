"""GET /jobs over real HTTP: filters, order, limits, cursors, paging under concurrent
inserts, ownership, webhook deliveries, retention."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from errand.api.app import create_app
from errand.jobids import QueueName, new_job_id, partition_for
from errand.queue.adding import JobSpec
from errand.queue.facade import INDEX_LEAD_MS
from errand.queue.producers import enqueue_notification, enqueue_report
from errand.redisio.connection import is_cluster
from support.stack import Stack, serve_api
from support.waiting import wait_for

OTHER = "someone-else"


async def list_all(stack: Stack, http: Any = None, **params: Any) -> list[dict[str, Any]]:
    """Every item, following the cursors; fails on a repeated job."""
    http = http or stack.http
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await http.get("/jobs", params=query)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            break
    ids = [item["jobId"] for item in items]
    assert len(ids) == len(set(ids)), "a job was listed twice"
    return items


def ids_of(items: list[dict[str, Any]]) -> set[str]:
    return {item["jobId"] for item in items}


async def post(stack: Stack, path: str, body: dict[str, Any]) -> str:
    reply = await stack.http.post(path, json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def settled(stack: Stack, job_ids: set[str]) -> None:
    async def final() -> bool:
        for job_id in job_ids:
            view = (await stack.http.get(f"/jobs/{job_id}")).json()
            if view["status"] not in ("completed", "failed"):
                return False
        return True

    await wait_for(final, timeout_s=30, what="every job final")


async def test_each_filter_and_their_combination(stack: Stack) -> None:
    jobs: dict[str, dict[str, str]] = {}  # job id -> queue, type, user, status
    for user in ("a-1", "b-2", "fail-3"):
        for kind in ("welcome", "order-confirmed"):
            job_id = await post(stack, "/notifications", {"type": kind, "userId": user})
            status = "failed" if user.startswith("fail-") else "completed"
            jobs[job_id] = {"queue": "notifications", "type": kind, "user": user, "status": status}
        report = await post(stack, "/reports", {"userId": user, "reportType": "welcome"})
        jobs[report] = {"queue": "reports", "type": "welcome", "user": user, "status": "completed"}
    await settled(stack, set(jobs))
    created = {item["jobId"]: item["createdAt"] for item in await list_all(stack)}
    assert set(created) == set(jobs)
    middle = sorted(created.values())[len(created) // 2]

    def expect(**want: str) -> set[str]:
        return {j for j, f in jobs.items() if all(f[k] == v for k, v in want.items())}

    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"queue": "reports"}, expect(queue="reports")),
        ({"queue": "notifications"}, expect(queue="notifications")),
        ({"status": "failed"}, expect(status="failed")),
        ({"status": "completed,failed"}, set(jobs)),
        ({"status": "waiting,active"}, set()),
        ({"type": "welcome"}, expect(type="welcome")),
        ({"userId": "b-2"}, expect(user="b-2")),
        ({"userId": "b-2", "type": "welcome"}, expect(user="b-2", type="welcome")),
        (
            {"queue": "notifications", "type": "welcome"},
            expect(queue="notifications", type="welcome"),
        ),
        ({"queue": "reports", "userId": "fail-3"}, expect(queue="reports", user="fail-3")),
        (
            {"type": "order-confirmed", "status": "failed"},
            expect(type="order-confirmed", status="failed"),
        ),
        ({"createdAfter": middle}, {j for j, c in created.items() if c > middle}),
        ({"createdBefore": middle}, {j for j, c in created.items() if c < middle}),
        (
            {"createdAfter": middle, "queue": "notifications", "limit": "1"},
            {j for j, c in created.items() if c > middle} & expect(queue="notifications"),
        ),
    ]
    for params, expected in cases:
        assert ids_of(await list_all(stack, **params)) == expected, params


async def test_newest_first_by_created_at_then_job_id(stack: Stack) -> None:
    batch = [{"type": "welcome", "userId": f"u-{i}"} for i in range(30)]  # many in one ms
    assert (await stack.http.post("/notifications/batch", json={"items": batch})).status_code == 200
    for i in range(5):
        await post(stack, "/reports", {"userId": f"r-{i}", "reportType": "activity"})
    items = await list_all(stack, limit="4")
    keys = [(item["createdAt"], item["jobId"]) for item in items]
    assert len(keys) == 35 and keys == sorted(keys, reverse=True)


async def test_limit_default_and_bounds(stack: Stack) -> None:
    batch = [{"type": "welcome", "userId": f"u-{i}"} for i in range(105)]
    await stack.http.post("/notifications/batch", json={"items": batch})
    assert len((await stack.http.get("/jobs")).json()["items"]) == 20
    assert len((await stack.http.get("/jobs?limit=1")).json()["items"]) == 1
    page = (await stack.http.get("/jobs?limit=100")).json()
    assert len(page["items"]) == 100 and page["nextCursor"]
    for bad in ("0", "101", "-1", "abc", "1.5", ""):
        reply = await stack.http.get("/jobs", params={"limit": bad})
        assert reply.status_code == 422, bad
        assert reply.json()["errors"][0]["field"] == "limit"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("status=waiting,", "status"),
        ("queue=webhooks", "queue"),
        ("createdAfter=yesterday", "createdAfter"),
        ("createdBefore=2026-13-01T00:00:00Z", "createdBefore"),
        ("type=no%20spaces", "type"),
        ("userId=", "userId"),
        ("cursor=", "cursor"),
        ("cursor=bm90IGEgY3Vyc29y", "cursor"),
        ("limit=5&limit=6", "limit"),
    ],
)
async def test_bad_parameters_are_422(stack: Stack, query: str, field: str) -> None:
    reply = await stack.http.get(f"/jobs?{query}")
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in reply.json()["errors"]]


async def test_forged_truncated_and_foreign_cursors_are_422(stack: Stack) -> None:
    batch = [{"type": "welcome", "userId": f"u-{i % 2}"} for i in range(6)]
    await stack.http.post("/notifications/batch", json={"items": batch})
    cursor = (await stack.http.get("/jobs?limit=2&userId=u-0")).json()["nextCursor"]
    assert (await stack.http.get(f"/jobs?limit=2&userId=u-0&cursor={cursor}")).status_code == 200
    body, _, sig = cursor.partition(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for at in (0, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[at] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode() + "." + sig
        reply = await stack.http.get("/jobs", params={"userId": "u-0", "cursor": forged})
        assert reply.status_code == 422, at
    for broken in (cursor[:-3], cursor.split(".")[0], cursor + "x"):
        reply = await stack.http.get("/jobs", params={"userId": "u-0", "cursor": broken})
        assert reply.status_code == 422
    for other in ({"userId": "u-1"}, {}, {"userId": "u-0", "status": "completed"}):
        reply = await stack.http.get("/jobs", params={**other, "cursor": cursor})
        assert reply.status_code == 422, other
        assert "other filters" in reply.json()["detail"]


async def test_paging_neither_repeats_nor_skips_while_jobs_are_created(stack: Stack) -> None:
    batch = [{"type": "welcome", "userId": f"u-{i}"} for i in range(260)]
    reply = await stack.http.post("/notifications/batch", json={"items": batch})
    existing = {item["jobId"] for item in reply.json()["items"]}
    first = (await stack.http.get("/jobs?limit=7")).json()
    created: list[str] = []

    async def keep_posting() -> None:
        while True:
            created.append(await post(stack, "/notifications", {"type": "welcome", "userId": "x"}))

    poster = asyncio.create_task(keep_posting())
    try:
        listed = [item["jobId"] for item in first["items"]]
        cursor = first["nextCursor"]
        while cursor:
            page = (await stack.http.get("/jobs", params={"limit": 7, "cursor": cursor})).json()
            listed += [item["jobId"] for item in page["items"]]
            cursor = page["nextCursor"]
    finally:
        poster.cancel()
    assert len(created) > 10, "the poster did not run alongside the paging"
    assert len(listed) == len(set(listed)) == len(existing)
    assert set(listed) == existing


async def test_a_job_created_after_the_first_page_is_left_out_whatever_its_clock(
    stack: Stack,
) -> None:
    """A host whose clock is behind writes a createdAt in the middle of the listing: the
    sequence number keeps it out of the pages of a listing that started before it."""
    queues = stack.app.state.services.queues
    batch = [{"type": "welcome", "userId": f"u-{i}"} for i in range(20)]
    await stack.http.post("/notifications/batch", json={"items": batch})
    first = (await stack.http.get("/jobs?limit=5")).json()
    oldest = min(item["createdAt"] for item in first["items"])
    behind_ms = int(datetime.fromisoformat(oldest).timestamp() * 1000) - 1
    opts = queues.job_options(QueueName.NOTIFICATIONS, new_job_id(QueueName.NOTIFICATIONS))
    data = {"clientId": stack.client_id, "type": "welcome", "userId": "late"}
    [late] = await queues.add_many(
        QueueName.NOTIFICATIONS, [JobSpec("welcome", data, {**opts, "timestamp": behind_ms})]
    )
    listed = [item["jobId"] for item in first["items"]]
    cursor = first["nextCursor"]
    while cursor:
        page = (await stack.http.get("/jobs", params={"limit": 5, "cursor": cursor})).json()
        listed += [item["jobId"] for item in page["items"]]
        cursor = page["nextCursor"]
    assert late not in listed and len(listed) == 20
    assert late in ids_of(await list_all(stack))


async def test_every_api_process_accepts_the_others_cursors(stack: Stack) -> None:
    batch = [{"type": "welcome", "userId": f"u-{i}"} for i in range(9)]
    await stack.http.post("/notifications/batch", json={"items": batch})
    second_api = serve_api(stack.settings, create_app(stack.settings))
    async with (
        second_api as other_url,
        httpx.AsyncClient(base_url=other_url, auth=stack.http.auth) as other,
    ):
        page = (await stack.http.get("/jobs?limit=4")).json()
        listed = [item["jobId"] for item in page["items"]]
        turn = 0
        while page["nextCursor"]:
            http = other if turn % 2 == 0 else stack.http
            params = {"limit": 4, "cursor": page["nextCursor"]}
            page = (await http.get("/jobs", params=params)).json()
            listed += [item["jobId"] for item in page["items"]]
            turn += 1
    assert len(listed) == len(set(listed)) == 9


async def test_another_clients_jobs_are_never_listed(stack: Stack) -> None:
    queues = stack.app.state.services.queues
    mine = {await post(stack, "/notifications", {"type": "welcome", "userId": "u-1"})}
    mine.add(await post(stack, "/reports", {"userId": "u-1", "reportType": "activity"}))
    theirs = {(await enqueue_notification(queues, OTHER, "welcome", "u-1", None)).job_id}
    theirs.add((await enqueue_report(queues, OTHER, "u-1", "activity", None)).job_id)
    assert ids_of(await list_all(stack)) == mine
    assert ids_of(await list_all(stack, userId="u-1", type="activity")) & theirs == set()
    other_index = stack.keys.job_index(OTHER, QueueName.REPORTS)
    assert await stack.redis.zcard(other_index) == 1


async def test_webhook_deliveries_are_never_listed(stack: Stack) -> None:
    hook = "http://127.0.0.1:9/hook"  # refused connection: the delivery job stays around
    job_id = await post(
        stack, "/notifications", {"type": "welcome", "userId": "u", "webhookUrl": hook}
    )

    async def deliveries() -> int:
        counts = await stack.app.state.services.queues.counts(QueueName.WEBHOOKS)
        return sum(counts.values())

    await wait_for(deliveries, what="a webhook delivery job")
    assert ids_of(await list_all(stack)) == {job_id}
    assert all(not item["jobId"].startswith("whk_") for item in await list_all(stack))


async def test_a_deduplicated_report_leaves_no_index_entry(stack: Stack) -> None:
    await stack.stop_workers()  # keep the first report in flight
    first = await stack.http.post("/reports", json={"userId": "u", "reportType": "activity"})
    again = await stack.http.post("/reports", json={"userId": "u", "reportType": "activity"})
    assert again.json()["deduplicated"] and again.json()["jobId"] == first.json()["jobId"]
    index = stack.keys.job_index(stack.client_id, QueueName.REPORTS)
    assert await stack.redis.zcard(index) == 1
    assert ids_of(await list_all(stack)) == {first.json()["jobId"]}


@pytest.mark.settings(keep_completed_seconds=1)
async def test_jobs_removed_by_retention_leave_the_listing_and_the_index(stack: Stack) -> None:
    old = {
        await post(stack, "/notifications", {"type": "welcome", "userId": f"u-{i}"})
        for i in range(5)
    }
    await settled(stack, old)
    index = stack.keys.job_index(stack.client_id, QueueName.NOTIFICATIONS)
    cutoff = datetime.now(UTC) + timedelta(seconds=1.5)

    # BullMQ removes completed jobs by age when later jobs of the same queue (partition)
    # complete: one later user per partition the old jobs are in
    later = {partition_for(stack.client_id, f"u-{i}", stack.keys.partitions) for i in range(5)}
    later_users = [
        next(u for u in _users() if partition_for(stack.client_id, u, stack.keys.partitions) == p)
        for p in later
    ]

    async def old_jobs_removed() -> bool:
        if datetime.now(UTC) > cutoff:
            for user in later_users:
                await post(stack, "/notifications", {"type": "welcome", "userId": user})
        return not any(
            [await stack.redis.exists(stack.keys.job(QueueName.NOTIFICATIONS, j)) for j in old]
        )

    await wait_for(old_jobs_removed, timeout_s=20, what="BullMQ's age removal")
    fresh = await post(stack, "/notifications", {"type": "welcome", "userId": "u-0"})
    by_user = stack.keys.job_index_by(stack.client_id, QueueName.NOTIFICATIONS, "user", "u-0")

    async def u0_entries() -> list[str]:
        return [m.rpartition(":")[0] for m in await stack.redis.zrange(by_user, 0, -1)]

    if not is_cluster(stack.settings):
        # a write prunes the sets it touches: u-0's set held only a removed job
        assert await u0_entries() == [fresh]
    else:
        # a cluster's write cannot see the job hashes (other slots): a read of u-0's set
        # drops the entry of the removed job once it is older than the index lead (an
        # entry that young may be a job still on its way, see adding.py)
        async def pruned_by_a_read() -> bool:
            assert fresh in ids_of(await list_all(stack, userId="u-0"))
            await list_all(stack)  # the old jobs were posted one by one: not all as old
            members = {m.rpartition(":")[0] for m in await stack.redis.zrange(index, 0, -1)}
            return await u0_entries() == [fresh] and members & old == set()

        await wait_for(pruned_by_a_read, timeout_s=INDEX_LEAD_MS / 1000 + 10, what="pruned")
    # a read drops the entries of removed jobs from the set it reads
    listed = ids_of(await list_all(stack))
    assert fresh in listed and listed & old == set()
    members = {m.rpartition(":")[0] for m in await stack.redis.zrange(index, 0, -1)}
    if not is_cluster(stack.settings):
        assert members == listed
    else:  # the later users' jobs removed since are still younger than the lead
        young = [j for j in members - listed if j not in old]
        assert members & old == set() and listed <= members
        assert not any([await stack.redis.exists(job_key(stack, j)) for j in young])


def job_key(stack: Stack, job_id: str) -> str:
    return stack.keys.job(QueueName.NOTIFICATIONS, job_id)


def _users() -> Iterator[str]:
    return (f"later-{n}" for n in itertools.count())

"""Waiting without hammering: Retry-After, long-poll, SSE and the one-listener-per-process hub."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from errand.jobids import QueueName
from support.sse import SseEvent, read_events
from support.stack import Stack
from support.waiting import wait_for


async def post_report(stack: Stack, user: str) -> str:
    reply = await stack.http.post("/reports", json={"userId": user, "reportType": "activity"})
    assert reply.status_code == 202
    return str(reply.json()["jobId"])


@pytest.mark.settings(report_seconds=0.6)
async def test_long_poll_answers_soon_after_completion(stack: Stack) -> None:
    job_id = await post_report(stack, "u-lp")
    started = time.monotonic()
    reply = await stack.http.get(f"/jobs/{job_id}?wait=20")
    elapsed = time.monotonic() - started
    body = reply.json()
    assert body["status"] == "completed", body
    assert "retry-after" not in reply.headers
    assert elapsed < 5
    finished = body["finishedAt"]
    from datetime import datetime

    answered_at = datetime.now().astimezone()
    lag = (answered_at - datetime.fromisoformat(finished.replace("Z", "+00:00"))).total_seconds()
    assert lag < 0.5, f"answered {lag:.3f} s after completion"


async def test_long_poll_times_out_with_the_current_status(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_report(stack, "u-lp-timeout")
    started = time.monotonic()
    reply = await stack.http.get(f"/jobs/{job_id}?wait=0.5")
    elapsed = time.monotonic() - started
    assert reply.status_code == 200
    assert reply.json()["status"] == "waiting"
    assert int(reply.headers["retry-after"]) >= 1
    assert 0.45 <= elapsed < 3


async def test_long_poll_on_a_finished_job_answers_at_once(stack: Stack) -> None:
    job_id = await post_report(stack, "u-lp-done")
    await stack.http.get(f"/jobs/{job_id}?wait=20")
    started = time.monotonic()
    reply = await stack.http.get(f"/jobs/{job_id}?wait=60")
    assert reply.json()["status"] == "completed"
    assert time.monotonic() - started < 1


async def collect_sse(
    stack: Stack,
    job_id: str,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    resource: str = "jobs",
) -> list[SseEvent]:
    events: list[SseEvent] = []
    path = f"/{resource}/{job_id}/events"
    async with stack.http.stream("GET", path, headers=headers) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        async for item in read_events(reply):
            if isinstance(item, SseEvent):
                events.append(item)
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events


@pytest.mark.settings(report_seconds=0.5)
async def test_sse_streams_a_report_from_waiting_to_completed(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_report(stack, "u-sse")
    collector = asyncio.create_task(asyncio.wait_for(collect_sse(stack, job_id), 20))
    await wait_for(
        lambda: asyncio.sleep(0, stack.app.state.services.events.subscriber_count),
        lambda n: n == 1,
        what="SSE subscribed",
    )
    await stack.start_worker([QueueName.REPORTS])
    events = await collector
    views = [orjson.loads(e.data) for e in events]
    assert all(e.event == "status" and e.id for e in events)
    statuses = [v["status"] for v in views]
    assert statuses[0] == "waiting"
    assert statuses[-1] == "completed"
    assert "active" in statuses
    progress = [v["progress"] for v in views if v["status"] == "active"]
    assert len(progress) >= 3 and progress == sorted(progress), progress
    assert views[-1]["progress"] == 100 and views[-1]["resultUrl"]


async def test_sse_for_a_finished_job_is_one_event_then_the_end(stack: Stack) -> None:
    job_id = await post_report(stack, "u-sse-done")
    await stack.http.get(f"/jobs/{job_id}?wait=20")
    events = await asyncio.wait_for(collect_sse(stack, job_id), 5)
    assert len(events) == 1
    assert orjson.loads(events[0].data)["status"] == "completed"


async def test_sse_for_an_unknown_job_is_404(stack: Stack) -> None:
    reply = await stack.http.get(f"/jobs/rep_{'1' * 32}/events")
    assert reply.status_code == 404


@pytest.mark.settings(notify_backoff_ms=150)
async def test_sse_shows_a_retried_notification(stack: Stack) -> None:
    reply = await stack.http.post("/notifications", json={"type": "welcome", "userId": "flaky-s"})
    job_id = reply.json()["jobId"]
    events = await asyncio.wait_for(collect_sse(stack, job_id), 20)
    views = [orjson.loads(e.data) for e in events]
    assert views[-1]["status"] == "completed" and views[-1]["attemptsMade"] == 3
    backoffs = [v for v in views if v["status"] == "waiting" and v["attemptsMade"] > 0]
    assert backoffs, views
    assert all(v["nextAttemptAt"] for v in backoffs)


@pytest.mark.settings(report_seconds=1.0)
async def test_sse_reconnect_with_last_event_id_misses_nothing(stack: Stack) -> None:
    job_id = await post_report(stack, "u-sse-re")
    first = await asyncio.wait_for(collect_sse(stack, job_id, stop_after=2), 10)
    last_id = first[-1].id
    assert last_id
    rest = await asyncio.wait_for(
        collect_sse(stack, job_id, headers={"Last-Event-ID": last_id}), 20
    )
    views = [orjson.loads(e.data) for e in rest]
    assert views[-1]["status"] == "completed"
    # The first event after reconnecting is the job as it is now: no state is lost.
    assert views[0]["progress"] >= orjson.loads(first[-1].data)["progress"]


async def test_disconnected_sse_client_is_cleaned_up(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_report(stack, "u-sse-gone")
    hub = stack.app.state.services.events
    async with stack.http.stream("GET", f"/jobs/{job_id}/events") as reply:
        async for item in read_events(reply):
            assert isinstance(item, SseEvent)
            break
        assert hub.subscriber_count == 1
    await wait_for(
        lambda: asyncio.sleep(0, hub.subscriber_count),
        lambda n: n == 0,
        timeout_s=5,
        what="SSE subscriber released",
    )


async def redis_clients(stack: Stack) -> int:
    return len(await stack.redis.client_list())


@pytest.mark.timeout(180)
@pytest.mark.settings(report_seconds=2.0)
async def test_two_thousand_long_polls_share_a_handful_of_redis_connections(stack: Stack) -> None:
    await stack.stop_workers()
    hub = stack.app.state.services.events
    job_id = await post_report(stack, "u-2k")
    baseline_clients = await redis_clients(stack)
    baseline_tasks = len(asyncio.all_tasks())
    limits = httpx.Limits(max_connections=2100, max_keepalive_connections=0)
    peak_clients = 0

    async with httpx.AsyncClient(
        base_url=stack.base_url, limits=limits, timeout=90, auth=stack.http.auth
    ) as client:

        async def poll() -> dict[str, Any]:
            reply = await client.get(f"/jobs/{job_id}?wait=60")
            return reply.json()

        polls = [asyncio.create_task(poll()) for _ in range(2000)]
        await wait_for(
            lambda: asyncio.sleep(0, hub.subscriber_count),
            lambda n: n == 2000,
            timeout_s=90,
            what="2,000 waiting clients",
        )
        peak_clients = await redis_clients(stack)
        await stack.start_worker([QueueName.REPORTS])
        answers = await asyncio.gather(*polls)

    assert all(a["status"] == "completed" for a in answers)
    assert peak_clients - baseline_clients <= 40, (baseline_clients, peak_clients)
    # A long poll leaves the hub before it answers: nothing to wait for once all answered.
    assert hub.subscriber_count == 0
    await stack.stop_workers()
    await wait_for(
        lambda: asyncio.sleep(0, len(asyncio.all_tasks())),
        lambda n: n <= baseline_tasks + 5,
        timeout_s=15,
        what="tasks released",
    )


async def test_abandoned_long_poll_is_released_at_once(stack: Stack) -> None:
    await stack.stop_workers()
    hub = stack.app.state.services.events
    job_id = await post_report(stack, "u-lp-gone")
    async with httpx.AsyncClient(base_url=stack.base_url, auth=stack.http.auth) as client:
        task = asyncio.create_task(client.get(f"/jobs/{job_id}?wait=60"))
        await wait_for(lambda: asyncio.sleep(0, hub.subscriber_count), lambda n: n == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_for(
        lambda: asyncio.sleep(0, hub.subscriber_count),
        lambda n: n == 0,
        timeout_s=5,
        what="long-poll subscriber released",
    )


@pytest.mark.settings(report_seconds=0.3)
async def test_event_readers_run_only_while_someone_waits(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No reader parses events for nobody; one starts for a waiter, stops after its linger,
    and a later waiter gets a fresh one that still sees its job finish."""
    monkeypatch.setattr("errand.api.events.READER_LINGER_S", 2.0)
    hub = stack.app.state.services.events
    await post_report(stack, "u-lazy-0")  # events flow, nobody waits
    assert hub.running_readers == []
    for round_ in range(2):
        job_id = await post_report(stack, f"u-lazy-{round_ + 1}")
        reply = await stack.http.get(f"/jobs/{job_id}?wait=20")
        assert reply.json()["status"] == "completed", reply.text
        assert [q for q, _ in hub.running_readers] == [QueueName.REPORTS]
        await wait_for(
            lambda: asyncio.sleep(0, hub.running_readers),
            lambda r: r == [],
            timeout_s=10,
            what="the idle reader to stop",
        )


# --- the same waiting tools on GET /notifications/{id} ---------------------------------


async def post_notification(stack: Stack, user: str) -> str:
    reply = await stack.http.post("/notifications", json={"type": "welcome", "userId": user})
    assert reply.status_code == 202
    assert reply.headers["location"] == f"/notifications/{reply.json()['jobId']}"
    return str(reply.json()["jobId"])


async def subscribers(stack: Stack, count: int) -> None:
    hub = stack.app.state.services.events
    await wait_for(
        lambda: asyncio.sleep(0, hub.subscriber_count),
        lambda n: n == count,
        what=f"{count} subscriber(s) in the event hub",
    )


async def test_notification_long_poll_holds_until_final(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_notification(stack, "u-ntf-lp")
    poll = asyncio.create_task(stack.http.get(f"/notifications/{job_id}?wait=20"))
    await subscribers(stack, 1)
    assert not poll.done(), "answered before the notification was final"
    await stack.start_worker([QueueName.NOTIFICATIONS])
    reply = await asyncio.wait_for(poll, 20)
    assert reply.status_code == 200
    body = reply.json()
    assert body["jobId"] == job_id and body["status"] == "completed"
    assert body["type"] == "welcome" and body["userId"] == "u-ntf-lp", "the notification view"
    assert "queue" not in body and "progress" not in body, "not the job view"
    assert "retry-after" not in reply.headers


async def test_notification_long_poll_times_out_with_the_current_status(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_notification(stack, "u-ntf-lp-timeout")
    started = time.monotonic()
    reply = await stack.http.get(f"/notifications/{job_id}?wait=0.5")
    assert reply.status_code == 200
    assert reply.json()["status"] == "waiting" and reply.json()["type"] == "welcome"
    assert int(reply.headers["retry-after"]) >= 1
    assert 0.45 <= time.monotonic() - started < 3


@pytest.mark.parametrize("wait", ["abc", "0", "61", "-1", "", "1e3"])
async def test_wait_is_validated_alike_on_jobs_and_notifications(stack: Stack, wait: str) -> None:
    await stack.stop_workers()
    job_ids = {
        "jobs": await post_report(stack, "u-wait-422"),
        "notifications": await post_notification(stack, "u-wait-422"),
    }
    replies = {
        name: await stack.http.get(f"/{name}/{job_id}", params={"wait": wait})
        for name, job_id in job_ids.items()
    }
    for reply in replies.values():
        assert reply.status_code == 422, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in reply.json()["errors"]] == ["wait"]
    assert replies["jobs"].json() == replies["notifications"].json()


async def test_notification_waiting_tools_are_404_for_a_report(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_report(stack, "u-not-a-notification")
    started = time.monotonic()
    for path in (f"/notifications/{job_id}?wait=5", f"/notifications/{job_id}/events"):
        reply = await stack.http.get(path)
        assert reply.status_code == 404, (path, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
    assert time.monotonic() - started < 2, "a 404 is not held for the wait"
    assert (await stack.http.get(f"/jobs/{job_id}")).status_code == 200, "the id exists"


async def test_notification_sse_streams_until_final(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post_notification(stack, "u-ntf-sse")
    collector = asyncio.create_task(
        asyncio.wait_for(collect_sse(stack, job_id, resource="notifications"), 20)
    )
    await subscribers(stack, 1)
    await stack.start_worker([QueueName.NOTIFICATIONS])
    events = await collector
    views = [orjson.loads(e.data) for e in events]
    assert all(e.event == "status" and e.id for e in events)
    assert views[0]["status"] == "waiting"
    assert views[-1]["status"] == "completed" and views[-1]["finishedAt"]
    assert all(v["jobId"] == job_id and v["type"] == "welcome" for v in views)
    assert all("queue" not in v for v in views), "the notification view, not the job view"


async def test_notification_sse_for_a_finished_one_is_one_event_then_the_end(
    stack: Stack,
) -> None:
    job_id = await post_notification(stack, "u-ntf-sse-done")
    await stack.http.get(f"/notifications/{job_id}?wait=20")
    events = await asyncio.wait_for(collect_sse(stack, job_id, resource="notifications"), 5)
    assert [orjson.loads(e.data)["status"] for e in events] == ["completed"]

"""POST /jobs/{id}/cancel through real HTTP, real workers and a real webhook receiver.

Scheduled, waiting and retry-backoff jobs end `canceled` at once (200) and never run;
an active report canceled from another API process stops at its next progress step,
ends `canceled` with no result and frees its in-flight slot; an active notification
and a final job answer 409 with `jobStatus`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from errand.jobids import QueueName
from support.lifecycle import final_view, in_ms, post_notification, rfc3339, sent_ids, view
from support.stack import Stack, serve_api
from support.waiting import wait_for
from support.webhook_receiver import WebhookReceiver, serve_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_receiver() as running:
        yield running


async def cancel(http: httpx.AsyncClient, job_id: str, expected: int) -> dict[str, Any]:
    reply = await http.post(f"/jobs/{job_id}/cancel")
    assert reply.status_code == expected, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def post_report(stack: Stack, user: str, **extra: Any) -> dict[str, Any]:
    body = {"userId": user, "reportType": "activity", **extra}
    reply = await stack.http.post("/reports", json=body)
    assert reply.status_code == 202, reply.text
    accepted: dict[str, Any] = reply.json()
    return accepted


async def test_scheduled_notification_canceled_is_never_sent(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    send_at_ms = in_ms(3000)  # room for the POST and the cancel on a loaded machine
    url = receiver.url("/sched")
    job_id = (await post_notification(stack, "u-c", sendAt=rfc3339(send_at_ms), webhookUrl=url))[
        "jobId"
    ]
    polling = asyncio.ensure_future(stack.http.get(f"/jobs/{job_id}?wait=20"))
    canceled = await cancel(stack.http, job_id, 200)
    assert canceled["status"] == "canceled" and canceled["deadLettered"] is False
    assert canceled["cancelRequested"] is True and canceled["finishedAt"] is not None
    assert canceled["attemptsMade"] == 0 and canceled["scheduledFor"] is None
    polled = await asyncio.wait_for(polling, 5)
    assert polled.json()["status"] == "canceled"
    [event] = await receiver.wait_for("/sched")
    assert event.payload["type"] == "notification.canceled"
    assert event.payload["data"]["status"] == "canceled"
    later = await post_notification(stack, "u-after", sendAt=rfc3339(send_at_ms + 300))
    await final_view(stack, later["statusUrl"])
    assert await sent_ids(stack) == [later["jobId"]]
    assert (await view(stack, f"/notifications/{job_id}"))["status"] == "canceled"
    counts = await stack.app.state.services.queues.counts(QueueName.NOTIFICATIONS)
    assert counts["failed"] == 0


async def test_waiting_notification_canceled_never_runs(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = (await post_notification(stack, "u-w"))["jobId"]
    assert (await cancel(stack.http, job_id, 200))["status"] == "canceled"
    other = await post_notification(stack, "u-other")
    await stack.start_worker()
    await final_view(stack, other["statusUrl"])
    assert await sent_ids(stack) == [other["jobId"]]
    async with stack.http.stream("GET", f"/jobs/{job_id}/events") as stream:
        lines = [line async for line in stream.aiter_lines() if line.startswith("data:")]
    assert len(lines) == 1 and '"status":"canceled"' in lines[0]


@pytest.mark.settings(notify_backoff_ms=3000)
async def test_notification_in_a_retry_backoff_canceled(stack: Stack) -> None:
    job_id = (await post_notification(stack, "flaky-c"))["jobId"]
    path = f"/notifications/{job_id}"
    await wait_for(lambda: view(stack, path), lambda v: v["attemptsMade"] == 1, 5, "a retry")
    canceled = await cancel(stack.http, job_id, 200)
    assert (canceled["status"], canceled["attemptsMade"]) == ("canceled", 1)
    assert await sent_ids(stack) == []


@pytest.mark.settings(email_send_ms=1500)
async def test_active_notification_and_final_jobs_answer_409(stack: Stack) -> None:
    job_id = (await post_notification(stack, "u-a"))["jobId"]
    path = f"/notifications/{job_id}"
    await wait_for(lambda: view(stack, path), lambda v: v["status"] == "active", 5, "active")
    assert (await cancel(stack.http, job_id, 409))["jobStatus"] == "active"
    await final_view(stack, path)
    assert (await cancel(stack.http, job_id, 409))["jobStatus"] == "completed"
    await stack.stop_workers()
    other = (await post_notification(stack, "u-b"))["jobId"]
    await cancel(stack.http, other, 200)
    assert (await cancel(stack.http, other, 409))["jobStatus"] == "canceled"
    missing = "ntf_" + "0" * 32
    assert (await stack.http.post(f"/jobs/{missing}/cancel")).status_code == 404


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("fast", marks=pytest.mark.settings(report_seconds=4)),
        pytest.param(
            "bullmq", marks=pytest.mark.settings(report_seconds=4, worker_engine="bullmq")
        ),
    ],
)
async def test_active_report_canceled_from_another_api_process(
    stack: Stack, receiver: WebhookReceiver, engine: str
) -> None:
    url = receiver.url("/rep")
    job_id = (await post_report(stack, "u-r", webhookUrl=url))["jobId"]
    path = f"/jobs/{job_id}"
    await wait_for(lambda: view(stack, path), lambda v: v["progress"] >= 10, 5, "progress")
    async with (
        serve_api(stack.settings) as other_url,
        httpx.AsyncClient(base_url=other_url, auth=stack.http.auth) as other,
    ):
        asked = await cancel(other, job_id, 202)
    assert (asked["status"], asked["cancelRequested"]) == ("active", True)
    fresh = await post_report(stack, "u-r")
    assert fresh["deduplicated"] is False and fresh["jobId"] != job_id
    done = await final_view(stack, path, timeout_s=5)
    assert done["status"] == "canceled" and done["resultUrl"] is None
    assert done["progress"] < 100 and done["deadLettered"] is False
    result = await stack.http.get(f"/reports/{job_id}/result")
    assert result.status_code == 409 and result.json()["jobStatus"] == "canceled"
    assert not await stack.redis.exists(stack.keys.report_result(stack.client_id, job_id))
    [event] = await receiver.wait_for("/rep")
    assert event.payload["type"] == "report.canceled"
    assert event.payload["data"]["status"] == "canceled"


async def test_waiting_report_canceled_frees_its_in_flight_slot(stack: Stack) -> None:
    await stack.stop_workers()
    first = await post_report(stack, "u-slot")
    assert (await post_report(stack, "u-slot"))["jobId"] == first["jobId"]
    assert (await cancel(stack.http, first["jobId"], 200))["status"] == "canceled"
    second = await post_report(stack, "u-slot")
    assert second["deduplicated"] is False and second["jobId"] != first["jobId"]
    await stack.start_worker()
    assert (await final_view(stack, second["statusUrl"]))["status"] == "completed"
    assert (await view(stack, first["statusUrl"]))["status"] == "canceled"


async def test_metrics_count_canceled_jobs(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = (await post_notification(stack, "u-m"))["jobId"]
    await cancel(stack.http, job_id, 200)
    text = (await stack.http.get("/metrics")).text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('errand_jobs_canceled_total{queue="notifications"}')
    )
    assert float(line.split()[-1]) >= 1


@pytest.mark.settings(email_send_ms=5)
async def test_a_cancel_racing_the_pickup_never_sends_after_a_200(stack: Stack) -> None:
    ids = [(await post_notification(stack, f"u-race{i}"))["jobId"] for i in range(40)]
    replies = await asyncio.gather(*(stack.http.post(f"/jobs/{j}/cancel") for j in ids))
    assert {r.status_code for r in replies} <= {200, 409}
    canceled = {j for j, r in zip(ids, replies, strict=True) if r.status_code == 200}
    for job_id in ids:
        await final_view(stack, f"/notifications/{job_id}")
    sent = set(await sent_ids(stack))
    assert canceled.isdisjoint(sent)
    assert canceled | sent == set(ids)

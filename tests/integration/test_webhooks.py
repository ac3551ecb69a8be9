"""Webhooks through the real parts: API over HTTP, a real worker, a real receiver on 127.0.0.1.

Every delivery the receiver records is verified with `standardwebhooks` after the test
awaits it. Receivers that answer 500s, hang, or refuse show retries with one
`webhook-id`, timeouts, dead-lettering and redrive; the webhook state shows up in
GET /jobs and GET /notifications.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bullmq import Job

from errand.jobids import QueueName, new_job_id, partition_of, queue_of
from errand.processors.webhooks import WebhookEvents
from errand.queue.facade import JobQueues
from errand.webhooks.signing import signatures_of
from errand.webhooks.state import webhook_states
from support.stack import BOTH_ENGINES, FAST_DEFAULTS, Stack
from support.waiting import wait_for
from support.webhook_receiver import HANG, Received, WebhookReceiver, serve_receiver

SECRET: str = FAST_DEFAULTS["webhook_secret"]
PREVIOUS = "whsec_" + base64.b64encode(b"previous-secret-for-rotation-32b").decode()

pytestmark = BOTH_ENGINES  # the webhook flow on the fast loop and bullmq's Worker


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_receiver() as running:
        yield running


async def post_notification(stack: Stack, user: str, url: str | None, kind: str = "welcome") -> str:
    body: dict[str, Any] = {"type": kind, "userId": user}
    if url is not None:
        body["webhookUrl"] = url
    reply = await stack.http.post("/notifications", json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def post_report(stack: Stack, user: str, url: str) -> str:
    reply = await stack.http.post(
        "/reports", json={"userId": user, "reportType": "activity", "webhookUrl": url}
    )
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def get_json(stack: Stack, path: str) -> dict[str, Any]:
    reply = await stack.http.get(path)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def webhook_state(stack: Stack, job_id: str, until: str, **match: Any) -> dict[str, Any]:
    """Wait until GET /jobs/{id} shows the webhook in status `until` (and the `match` fields)."""

    async def probe() -> dict[str, Any] | None:
        hook: dict[str, Any] | None = (await get_json(stack, f"/jobs/{job_id}"))["webhook"]
        return hook

    def done(hook: dict[str, Any] | None) -> bool:
        return (
            hook is not None
            and hook["status"] == until
            and all(hook[k] == v for k, v in match.items())
        )

    hook = await wait_for(probe, done, what=f"webhook of {job_id} {until} {match}")
    assert hook is not None
    return hook


async def dead_letters(stack: Stack, queue: str, count: int | None = None) -> list[dict[str, Any]]:
    """GET /admin/dlq?queue=…; with `count`, wait until it lists that many jobs."""

    async def probe() -> list[dict[str, Any]]:
        reply = await stack.http.get("/admin/dlq", params={"queue": queue}, headers=stack.admin)
        assert reply.status_code == 200, reply.text
        items: list[dict[str, Any]] = reply.json()["items"]
        return items

    if count is None:
        return await probe()
    return await wait_for(probe, lambda items: len(items) == count, what=f"{count} in the DLQ")


def assert_standard_headers(delivery: Received) -> None:
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.webhook_id.startswith("msg_")
    assert abs(delivery.timestamp_s - delivery.received_s) <= 2
    assert delivery.headers["webhook-signature"].startswith("v1,")


# --- events and signatures ----------------------------------------------------------


async def test_report_completed_is_delivered_signed(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    job_id = await post_report(stack, "u-hook", receiver.url("/reports"))
    [delivery] = await receiver.wait_for("/reports")
    assert_standard_headers(delivery)
    event = delivery.verify(SECRET)
    assert event["type"] == "report.completed"
    assert event["timestamp"].endswith("Z")
    data = event["data"]
    assert data["jobId"] == job_id and data["queue"] == "reports"
    assert data["status"] == "completed" and data["progress"] == 100
    assert data["attemptsMade"] == 1 and data["deadLettered"] is False
    assert data["resultUrl"] == f"/reports/{job_id}/result" and data["error"] is None
    assert data["userId"] == "u-hook" and data["reportType"] == "activity"
    assert "webhook" not in data

    hook = await webhook_state(stack, job_id, "delivered")
    assert hook["url"] == receiver.url("/reports")
    assert hook["attempts"] == 1 and hook["lastStatusCode"] == 200
    assert hook["lastError"] is None and hook["deliveredAt"].endswith("Z")
    view = await get_json(stack, f"/jobs/{job_id}")
    assert view["status"] == "completed"


async def test_notification_sent_is_delivered_after_the_job_is_recorded_final(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    seen_status: list[str] = []

    async def read_back(delivery: Received) -> None:  # what a receiver reading the job sees
        job_id = delivery.payload["data"]["jobId"]
        seen_status.append((await get_json(stack, f"/notifications/{job_id}"))["status"])

    receiver.on_delivery = read_back
    job_id = await post_notification(stack, "u-sent", receiver.url("/n"), "password-reset")
    [delivery] = await receiver.wait_for("/n")
    event = delivery.verify(SECRET)
    assert event["type"] == "notification.sent"
    data = event["data"]
    assert data["jobId"] == job_id and data["queue"] == "notifications"
    assert data["type"] == "password-reset" and data["userId"] == "u-sent"
    assert data["priority"] == 1 and data["status"] == "completed"
    assert data["attemptsMade"] == 1 and data["deadLettered"] is False
    assert seen_status == ["completed"]

    await webhook_state(stack, job_id, "delivered")
    view = await get_json(stack, f"/notifications/{job_id}")
    assert view["webhook"]["status"] == "delivered" and view["webhook"]["attempts"] == 1
    assert view["webhook"]["lastStatusCode"] == 200 and view["webhook"]["deliveredAt"]


@pytest.mark.settings(notify_retries=1)
async def test_notification_failed_once_dead_lettered_and_again_after_a_dlq_retry(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    job_id = await post_notification(stack, "fail-hook", receiver.url("/failed"))
    [first] = await receiver.wait_for("/failed")
    event = first.verify(SECRET)
    assert event["type"] == "notification.failed"
    data = event["data"]
    assert data["status"] == "failed" and data["deadLettered"] is True
    assert data["attemptsMade"] == 2 and "554" in data["error"]
    old = await webhook_state(stack, job_id, "delivered")
    assert len(receiver.at("/failed")) == 1, "one event per final outcome, not per attempt"
    await stack.stop_workers()  # the retried job waits: what GET shows before it runs

    retry = await stack.http.post(f"/admin/dlq/{job_id}/retry", headers=stack.admin)
    assert retry.status_code == 202
    view = await get_json(stack, f"/notifications/{job_id}")
    assert view["status"] == "waiting" and view["deadLettered"] is False
    assert view["webhook"] == {
        "url": receiver.url("/failed"),
        "status": "pending",
        "attempts": 0,
        "lastStatusCode": None,
        "lastError": None,
        "deliveredAt": None,
    }

    await stack.start_worker()
    _, second = await receiver.wait_for("/failed", 2)
    assert second.verify(SECRET)["type"] == "notification.failed"
    assert second.webhook_id != first.webhook_id, "a new round is a new event"
    hook = await webhook_state(stack, job_id, "delivered")
    assert hook["attempts"] == 1 and hook["lastStatusCode"] == 200
    assert hook["deliveredAt"] > old["deliveredAt"], (hook, old)
    state = stack.keys.webhook_state(job_id)
    assert await stack.redis.hget(state, "webhookId") == second.webhook_id
    assert (await get_json(stack, f"/notifications/{job_id}"))["webhook"] == hook


async def test_a_round_started_before_the_retry_resets_is_left_alone(stack: Stack) -> None:
    """The retried job's first attempt may start the new round before the retry route resets
    the state: that round's state (pending, then its own delivery) is then never touched."""
    states = webhook_states(stack.settings, stack.redis)
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    assert await states.await_next_round(job_id, 0) is False, "no state: nothing to reset"
    assert await stack.redis.exists(stack.keys.webhook_state(job_id)) == 0

    last_round = await states.start_round(job_id)
    await states.mark_pending(job_id, "whk_1", "notification.failed", "msg_1")
    await states.record(job_id, "whk_1", {"status": "delivered", "deliveredAt": "t1"})
    new_round = await states.start_round(job_id)  # the worker, before the retry route
    assert new_round == last_round + 1
    assert await states.record(job_id, "whk_1", {"status": "delivered"}) is None, "old event"
    await states.mark_pending(job_id, "whk_2", "notification.sent", "msg_2")
    await states.record(job_id, "whk_2", {"status": "delivered", "deliveredAt": "t2"})

    assert await states.await_next_round(job_id, last_round) is False
    fields = await stack.redis.hgetall(stack.keys.webhook_state(job_id))
    assert fields["status"] == "delivered" and fields["deliveredAt"] == "t2"
    assert fields["round"] == str(new_round) and fields["eventJobId"] == "whk_2"


async def test_report_failed_event(stack: Stack, receiver: WebhookReceiver) -> None:
    queues = JobQueues(stack.settings, stack.redis)
    job_id = new_job_id(QueueName.REPORTS)  # no reportType: the processor fails on every attempt
    await queues.add(
        QueueName.REPORTS,
        "report",
        {"userId": "u-broken", "webhookUrl": receiver.url("/rf")},
        job_id,
    )
    [delivery] = await receiver.wait_for("/rf")
    event = delivery.verify(SECRET)
    assert event["type"] == "report.failed"
    assert event["data"]["status"] == "failed" and event["data"]["deadLettered"] is True
    assert event["data"]["attemptsMade"] == 2 and "reportType" in event["data"]["error"]
    assert event["data"]["resultUrl"] is None


async def test_a_job_without_webhook_url_emits_nothing(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    job_id = await post_notification(stack, "u-quiet", None)
    view = await wait_for(
        lambda: get_json(stack, f"/notifications/{job_id}"), lambda v: v["status"] == "completed"
    )
    assert view["webhook"] is None
    assert await stack.redis.exists(stack.keys.webhook_state(job_id)) == 0
    counts = await JobQueues(stack.settings, stack.redis).counts(QueueName.WEBHOOKS)
    assert sum(counts.values()) == 0, counts


async def test_emitting_twice_for_one_outcome_adds_one_delivery(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    """A redelivered job (crash between emit and acknowledgement) emits the same event again."""
    job_id = await post_notification(stack, "u-twice", receiver.url("/twice"))
    [delivery] = await receiver.wait_for("/twice")
    await webhook_state(stack, job_id, "delivered")
    queues = JobQueues(stack.settings, stack.redis)
    await wait_for(lambda: queues.counts(QueueName.WEBHOOKS), lambda c: c["completed"] == 1)
    job = await Job.fromId(queues.bullmq(QueueName.NOTIFICATIONS, partition_of(job_id)), job_id)
    job.attemptsMade -= 1  # as the processor saw it on the attempt that succeeded
    events = WebhookEvents(stack.settings, stack.redis)
    again = await events.emit(QueueName.NOTIFICATIONS, job, None)
    assert again is not None and queue_of(again) is QueueName.WEBHOOKS
    assert delivery.webhook_id == "msg_" + again.rpartition("_")[2]
    counts = await queues.counts(QueueName.WEBHOOKS)
    assert counts["completed"] == 1 and sum(counts.values()) == 1
    hook = await webhook_state(stack, job_id, "delivered")
    assert hook["attempts"] == 1


@pytest.mark.settings(webhook_secret_previous=PREVIOUS)
async def test_rotation_signs_with_both_secrets(stack: Stack, receiver: WebhookReceiver) -> None:
    await post_notification(stack, "u-rotate", receiver.url("/rot"))
    [delivery] = await receiver.wait_for("/rot")
    parts = signatures_of(delivery.headers["webhook-signature"])
    assert len(parts) == 2
    delivery.verify(SECRET)
    delivery.verify(PREVIOUS)
    for part, secret in zip(parts, (SECRET, PREVIOUS), strict=True):
        single = Received(
            delivery.path,
            {**delivery.headers, "webhook-signature": part},
            delivery.body,
            delivery.received_s,
            delivery.answered,
        )
        single.verify(secret)


# --- retries, timeouts, dead letters --------------------------------------------------


@pytest.mark.settings(webhook_backoff_ms=600)
async def test_retries_keep_the_webhook_id_and_refresh_the_timestamp(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    receiver.answer("/flaky", 500, 500, 200)
    job_id = await post_notification(stack, "u-retry", receiver.url("/flaky"))
    await receiver.wait_for("/flaky", 1)
    pending = await webhook_state(stack, job_id, "pending", lastStatusCode=500)
    assert pending["lastError"] == "the receiver answered 500" and pending["attempts"] >= 1

    deliveries = await receiver.wait_for("/flaky", 3)
    for delivery in deliveries:
        delivery.verify(SECRET)
        assert_standard_headers(delivery)
    assert [d.answered for d in deliveries] == [500, 500, 200]
    assert len({d.webhook_id for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1
    stamps = [d.timestamp_s for d in deliveries]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0], stamps  # 0.6 s + 1.2 s apart

    hook = await webhook_state(stack, job_id, "delivered")
    assert hook["attempts"] == 3 and hook["lastStatusCode"] == 200 and hook["lastError"] is None
    assert (await get_json(stack, f"/notifications/{job_id}"))["status"] == "completed"


@pytest.mark.settings(webhook_timeout_s=0.3, webhook_retries=1)
async def test_a_receiver_that_never_answers_times_out(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    receiver.answer("/slow", HANG)
    job_id = await post_notification(stack, "u-slow", receiver.url("/slow"))
    hook = await webhook_state(stack, job_id, "failed")
    assert hook["attempts"] == 2 and hook["lastStatusCode"] is None
    assert hook["lastError"] == "no answer within 0.3 s"
    assert len(receiver.at("/slow")) == 2
    [item] = await dead_letters(stack, "webhooks", 1)
    assert item["data"]["sourceJobId"] == job_id
    assert (await get_json(stack, f"/notifications/{job_id}"))["status"] == "completed"


@pytest.mark.settings(webhook_retries=2)
async def test_dead_lettered_delivery_is_redriven_from_the_dlq(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    receiver.answer("/down", 503)
    job_id = await post_notification(stack, "u-dlq", receiver.url("/down"))
    hook = await webhook_state(stack, job_id, "failed")
    assert hook["attempts"] == 3 and hook["lastStatusCode"] == 503
    [item] = await dead_letters(stack, "webhooks", 1)
    assert item["queue"] == "webhooks" and item["name"] == "notification.sent"
    assert item["attemptsMade"] == 3 and item["failedReason"] == "the receiver answered 503"
    assert item["data"]["sourceJobId"] == job_id and item["data"]["url"] == receiver.url("/down")
    assert item["clientId"] == stack.client_id  # the owner of the job it tells about
    for route in (f"/jobs/{item['jobId']}", f"/jobs/{item['jobId']}/events"):
        assert (await stack.http.get(route)).status_code == 404  # a delivery is nobody's job
    source = await get_json(stack, f"/notifications/{job_id}")
    assert source["status"] == "completed" and source["deadLettered"] is False

    receiver.answer("/down", 200)
    retry = await stack.http.post(f"/admin/dlq/{item['jobId']}/retry", headers=stack.admin)
    assert retry.status_code == 202, retry.text
    hook = await webhook_state(stack, job_id, "delivered")
    assert hook["attempts"] == 4 and hook["lastStatusCode"] == 200 and hook["lastError"] is None
    deliveries = receiver.at("/down")
    assert [d.answered for d in deliveries] == [503, 503, 503, 200]
    assert len({d.webhook_id for d in deliveries}) == 1
    deliveries[-1].verify(SECRET)
    assert await dead_letters(stack, "webhooks") == []


# --- the SSRF guard -------------------------------------------------------------------

REFUSED_URLS = [
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://10.0.0.1/hook",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost/hook",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "javascript:alert(1)",
]


@pytest.mark.settings(webhook_allow_private=False)
@pytest.mark.parametrize("route", ["/reports", "/notifications"])
async def test_submit_refuses_non_public_webhook_urls(stack: Stack, route: str) -> None:
    base = {"userId": "u-ssrf", "reportType": "activity", "type": "welcome"}
    for url in REFUSED_URLS:
        reply = await stack.http.post(route, json={**base, "webhookUrl": url})
        assert reply.status_code == 422, (url, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in reply.json()["errors"]] == ["webhookUrl"], url
    assert (await JobQueues(stack.settings, stack.redis).counts(QueueName.REPORTS))["waiting"] == 0


@pytest.mark.parametrize("route", ["/reports", "/notifications"])
async def test_submit_refuses_a_host_that_does_not_resolve(stack: Stack, route: str) -> None:
    body = {
        "userId": "u-dns",
        "reportType": "activity",
        "type": "welcome",
        "webhookUrl": "https://no-such-host.invalid/hook",
    }
    reply = await stack.http.post(route, json=body)
    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert error["field"] == "webhookUrl" and "does not resolve" in error["message"]


async def test_delivery_time_check_refuses_what_submit_allowed(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    await stack.stop_workers()
    strict = stack.settings.model_copy(update={"webhook_allow_private": False})
    stack.settings = strict  # the worker below runs with private addresses refused
    await stack.start_worker()
    job_id = await post_notification(stack, "u-rebind", receiver.url("/never"))
    hook = await webhook_state(stack, job_id, "failed")
    assert hook["attempts"] == 1 and hook["lastStatusCode"] is None
    assert hook["lastError"].startswith("refused: ") and "loopback" in hook["lastError"]
    [item] = await dead_letters(stack, "webhooks", 1)
    assert item["attemptsMade"] == 1, "a refused address is not retried"
    assert receiver.at("/never") == []


async def test_a_named_host_is_reached_at_its_checked_address_with_its_name(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    """The delivery connects to the address it checked and sends the URL's name as Host."""
    named = receiver.url("/named").replace("127.0.0.1", "localhost")
    await post_notification(stack, "u-named", named)
    [delivery] = await receiver.wait_for("/named")
    assert delivery.headers["host"] == named.removeprefix("http://").removesuffix("/named")
    delivery.verify(SECRET)

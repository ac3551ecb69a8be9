"""Notifications: priorities, retries with backoff, dead-lettering, idempotent sending, outbox."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from errand.jobids import QueueName
from support.stack import BOTH_ENGINES, Stack
from support.waiting import wait_for

pytestmark = BOTH_ENGINES  # the notification flow on the fast loop and bullmq's Worker


async def notify(stack: Stack, kind: str, user: Any, **extra: Any) -> str:
    reply = await stack.http.post("/notifications", json={"type": kind, "userId": user, **extra})
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert reply.headers["location"] == body["statusUrl"] == f"/notifications/{body['jobId']}"
    assert int(reply.headers["retry-after"]) >= 1
    return str(body["jobId"])


async def status(stack: Stack, job_id: str) -> dict[str, Any]:
    reply = await stack.http.get(f"/notifications/{job_id}")
    assert reply.status_code == 200, reply.text
    return reply.json()


async def final(stack: Stack, job_id: str, timeout_s: float = 15) -> dict[str, Any]:
    return await wait_for(
        lambda: status(stack, job_id),
        lambda v: v["status"] in ("completed", "failed"),
        timeout_s=timeout_s,
        what=f"{job_id} final",
    )


async def outbox(stack: Stack) -> list[dict[str, Any]]:
    return [orjson.loads(m) for m in await stack.outbox_raw()]


async def test_welcome_is_rendered_sent_and_recorded(stack: Stack) -> None:
    job_id = await notify(stack, "welcome", 42)
    view = await final(stack, job_id)
    assert view == view | {
        "status": "completed",
        "type": "welcome",
        "userId": "42",
        "priority": 5,
        "attemptsMade": 1,
        "deadLettered": False,
        "error": None,
        "webhook": None,
    }
    [mail] = await outbox(stack)
    assert mail["messageId"] == f"<{job_id}@errand.local>"
    assert "42" in mail["subject"] and "42" in mail["text"] and "42" in mail["html"]
    assert await stack.redis.exists(stack.keys.sent_ledger(job_id))
    ttl = await stack.redis.ttl(stack.keys.sent_ledger(job_id))
    assert 86000 < ttl <= 86400


@pytest.mark.parametrize(("kind", "priority"), [("password-reset", 1), ("order-confirmed", 5)])
async def test_priority_per_type(stack: Stack, kind: str, priority: int) -> None:
    await stack.stop_workers()
    job_id = await notify(stack, kind, "u-p")
    assert (await status(stack, job_id))["priority"] == priority


@pytest.mark.settings(email_send_ms=50)
async def test_password_reset_overtakes_queued_welcomes(stack: Stack) -> None:
    """Priority holds within a partition: one user's jobs share one (docs/scaling.md)."""
    await stack.stop_workers()
    welcomes = [await notify(stack, "welcome", "u-1") for _ in range(20)]
    reset = await notify(stack, "password-reset", "u-1")
    await stack.start_worker([QueueName.NOTIFICATIONS], concurrency=1)
    for job_id in [reset, *welcomes]:
        await final(stack, job_id)
    # The outbox's order is the send order (a status read after the reset finished would
    # race the worker, which goes on sending welcomes meanwhile).
    order = [m["messageId"] for m in reversed(await outbox(stack))]
    assert len(order) == 21
    assert order.index(f"<{reset}@errand.local>") <= 2, "welcomes sent before the reset"


async def test_flaky_user_completes_on_the_third_attempt(stack: Stack) -> None:
    job_id = await notify(stack, "welcome", "flaky-7")
    view = await final(stack, job_id)
    assert view["status"] == "completed"
    assert view["attemptsMade"] == 3
    assert len(await outbox(stack)) == 1


@pytest.mark.settings(notify_backoff_ms=200)
async def test_fail_user_is_dead_lettered_after_four_attempts_with_growing_backoff(
    stack: Stack,
) -> None:
    job_id = await notify(stack, "password-reset", "fail-1")
    starts: list[str] = []

    async def probe() -> dict[str, Any]:
        view = await stack.http.get(f"/jobs/{job_id}")
        body = view.json()
        if body["startedAt"] and body["startedAt"] not in starts:
            starts.append(body["startedAt"])
        return body

    job = await wait_for(probe, lambda v: v["status"] == "failed", timeout_s=20)
    assert job["deadLettered"] is True
    assert job["attemptsMade"] == 4
    assert "554" in job["error"]
    view = await status(stack, job_id)
    assert view["deadLettered"] is True and view["attemptsMade"] == 4
    assert await outbox(stack) == []

    from datetime import datetime

    times = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in starts]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 2, starts
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert gaps[0] >= 0.2

    dlq = (await stack.http.get("/admin/dlq", headers=stack.admin)).json()
    assert dlq["total"] == 1
    [item] = dlq["items"]
    assert item["jobId"] == job_id and item["queue"] == "notifications"
    assert item["attemptsMade"] == 4 and "554" in item["failedReason"]
    assert stack.client is not None and item["clientId"] == stack.client.client_id
    assert item["data"] == {
        "clientId": stack.client.client_id,
        "type": "password-reset",
        "userId": "fail-1",
    }
    assert item["name"] == "password-reset" and item["failedAt"]


async def test_a_redelivered_job_whose_email_went_out_is_not_sent_again(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await notify(stack, "welcome", "u-once")
    # What the ledger holds after a worker sent the email and died before the ack.
    await stack.redis.set(stack.keys.sent_ledger(job_id), "simulated", ex=60)
    await stack.start_worker([QueueName.NOTIFICATIONS])
    view = await final(stack, job_id)
    assert view["status"] == "completed"
    assert await outbox(stack) == []


async def test_concurrent_redelivery_waits_for_the_claim_holder(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await notify(stack, "welcome", "u-claim")
    # Another worker holds the send claim and finishes the send: this one must not send.
    await stack.redis.set(stack.keys.send_claim(job_id), "other-worker", px=5000)
    await stack.start_worker([QueueName.NOTIFICATIONS])
    await wait_for(lambda: status(stack, job_id), lambda v: v["status"] == "active")
    await stack.redis.set(stack.keys.sent_ledger(job_id), "simulated", ex=60)
    view = await final(stack, job_id)
    assert view["status"] == "completed"
    assert await outbox(stack) == []

"""sendAt and expiresAt on POST /notifications, through real HTTP and a real worker.

A scheduled notification is `scheduled` until its sendAt and goes out within a second
after it, never before (measured on the outbox record); one past its expiresAt is
never sent, ends `expired` and is not dead-lettered, a retry backoff included.
"""

from __future__ import annotations

from typing import Any

import pytest

from errand.clock import now_ms
from errand.jobids import QueueName
from support.lifecycle import (
    epoch_ms,
    final_view,
    in_ms,
    iso_utc,
    outbox,
    post_notification,
    rfc3339,
    sent_ids,
    view,
)
from support.stack import Stack
from support.waiting import wait_for


async def test_scheduled_notification_is_sent_within_a_second_of_send_at_never_before(
    stack: Stack,
) -> None:
    send_at_ms = in_ms(3000)  # room for the POST and two reads before it is due
    accepted = await post_notification(stack, "u-sched", sendAt=rfc3339(send_at_ms))
    assert accepted["status"] == "scheduled"
    path = accepted["statusUrl"]
    scheduled = await view(stack, path)
    assert scheduled["status"] == "scheduled"
    assert scheduled["scheduledFor"] == iso_utc(send_at_ms)
    assert scheduled["sendAt"] == iso_utc(send_at_ms)
    assert scheduled["nextAttemptAt"] is None
    job = await view(stack, f"/jobs/{accepted['jobId']}")
    assert (job["status"], job["scheduledFor"]) == ("scheduled", iso_utc(send_at_ms))
    done = await final_view(stack, path)
    assert done["status"] == "completed" and done["scheduledFor"] is None
    [mail] = await outbox(stack)
    late_ms = epoch_ms(mail["sentAt"]) - send_at_ms
    assert 0 <= late_ms <= 1000, f"sent {late_ms} ms after sendAt"


async def test_send_at_now_or_in_the_past_sends_at_once(stack: Stack) -> None:
    accepted = await post_notification(stack, "u-past", sendAt=rfc3339(in_ms(-60_000)))
    assert accepted["status"] == "waiting"
    done = await final_view(stack, accepted["statusUrl"], timeout_s=5)
    assert done["status"] == "completed"


@pytest.mark.settings(email_send_ms=10)
async def test_priority_applies_among_jobs_due_together(stack: Stack) -> None:
    await stack.stop_workers()
    due = rfc3339(in_ms(300))
    # priority holds within a partition: one user's jobs share one (docs/scaling.md)
    welcomes = [(await post_notification(stack, "u-1", sendAt=due))["jobId"] for _ in range(5)]
    reset = await post_notification(stack, "u-1", type="password-reset", sendAt=due)
    await wait_for(lambda: _async(now_ms()), lambda t: t > epoch_ms(due) + 100, 5, "due")
    await stack.start_worker(concurrency=1)
    await final_view(stack, reset["statusUrl"])
    for job_id in welcomes:
        await final_view(stack, f"/notifications/{job_id}")
    order = list(reversed(await sent_ids(stack)))
    assert order[0] == reset["jobId"], order


async def _async(value: Any) -> Any:
    return value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sendAt": "2026-12-01T08:00:00"}, "sendAt"),  # naive: no offset
        ({"sendAt": "2026-12-01 08:00"}, "sendAt"),
        ({"sendAt": "tomorrow"}, "sendAt"),
        ({"sendAt": 1767225600}, "sendAt"),
        ({"sendAt": "2026-02-30T08:00:00+01:00"}, "sendAt"),
        ({"expiresAt": "2026-12-01"}, "expiresAt"),
        ({"expiresAt": ""}, "expiresAt"),
    ],
)
async def test_times_that_are_not_rfc3339_with_an_offset_are_422(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    reply = await stack.http.post("/notifications", json={"type": "welcome", "userId": 1, **body})
    assert reply.status_code == 422, reply.text
    assert [e["field"] for e in reply.json()["errors"]] == [field]


async def test_time_rules_are_422(stack: Stack) -> None:
    cases = [
        ({"sendAt": rfc3339(in_ms(366 * 86_400_000))}, "sendAt"),
        ({"expiresAt": rfc3339(in_ms(-1000))}, "expiresAt"),
        ({"sendAt": rfc3339(in_ms(60_000)), "expiresAt": rfc3339(in_ms(30_000))}, "expiresAt"),
        ({"sendAt": rfc3339(in_ms(60_000)), "expiresAt": rfc3339(in_ms(60_000))}, "expiresAt"),
    ]
    for body, field in cases:
        reply = await stack.http.post(
            "/notifications", json={"type": "welcome", "userId": 1, **body}
        )
        assert reply.status_code == 422, (body, reply.text)
        assert [e["field"] for e in reply.json()["errors"]] == [field], body
    assert await stack.redis.keys(f"{stack.settings.queue_prefix}:notifications:ntf_*") == []


async def test_z_and_null_are_accepted(stack: Stack) -> None:
    ahead = iso_utc(in_ms(3_600_000))
    accepted = await post_notification(stack, "u-z", sendAt=ahead, expiresAt=None)
    got = await view(stack, accepted["statusUrl"])
    assert (got["status"], got["scheduledFor"], got["expiresAt"]) == ("scheduled", ahead, None)


async def test_expired_notification_is_never_sent_nor_dead_lettered(stack: Stack) -> None:
    await stack.stop_workers()
    expires_ms = in_ms(1500)  # still ahead when the (possibly slow) POST arrives
    accepted = await post_notification(stack, "u-exp", expiresAt=rfc3339(expires_ms))
    await wait_for(lambda: _async(now_ms()), lambda t: t > expires_ms, 5, "expiry")
    await stack.start_worker()
    done = await final_view(stack, accepted["statusUrl"])
    assert done["status"] == "expired" and done["deadLettered"] is False
    assert "expired" in done["error"] and done["attemptsMade"] == 1
    assert await outbox(stack) == []
    dlq = (await stack.http.get("/admin/dlq", headers=stack.admin)).json()
    assert dlq["total"] == 0


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("fast", marks=pytest.mark.settings(notify_backoff_ms=4000)),
        pytest.param(
            "bullmq", marks=pytest.mark.settings(notify_backoff_ms=4000, worker_engine="bullmq")
        ),
    ],
)
async def test_expiry_during_a_retry_backoff(stack: Stack, engine: str) -> None:
    """`flaky-` fails its first attempt; the retry is due after expiresAt: expired, unsent."""
    accepted = await post_notification(stack, "flaky-exp", expiresAt=rfc3339(in_ms(2000)))
    path = accepted["statusUrl"]
    backoff = await wait_for(
        lambda: view(stack, path), lambda v: v["attemptsMade"] == 1, 5, "first attempt failed"
    )
    assert backoff["status"] == "waiting" and backoff["nextAttemptAt"] is not None
    done = await final_view(stack, path)
    assert (done["status"], done["deadLettered"]) == ("expired", False)
    assert await outbox(stack) == []
    counts = await stack.app.state.services.queues.counts(QueueName.NOTIFICATIONS)
    assert counts["failed"] == 0


async def test_expires_at_later_than_the_send_is_sent(stack: Stack) -> None:
    accepted = await post_notification(stack, "u-ok", expiresAt=rfc3339(in_ms(60_000)))
    done = await final_view(stack, accepted["statusUrl"])
    assert done["status"] == "completed" and done["error"] is None
    assert await sent_ids(stack) == [accepted["jobId"]]

"""The simulated transport's atomic delivery: its checks, its verdicts and the outbox cap.

One script checks the sent ledger, another worker's send claim, the cancel flag and
`expiresAt`, then writes the outbox and the ledger (processors/notifications.py relies
on it instead of a send claim).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from errand.clock import now_ms
from errand.jobids import QueueName, new_job_id, partition_of
from errand.mail.templates import render
from errand.mail.transports import SendVerdict, SentMark, SimulatedSender, TransientFailure
from errand.redisio.connection import connect
from errand.settings import Settings


@pytest.fixture
async def sender(make_settings: Any) -> AsyncIterator[SimulatedSender]:
    settings: Settings = make_settings(email_send_ms=0)
    redis = connect(settings)
    try:
        yield SimulatedSender(settings, redis)
    finally:
        await redis.aclose()


def mark_for(sender: SimulatedSender, job_id: str, expires_ms: int = 0) -> SentMark:
    k = sender.keys
    return SentMark(
        k.sent_ledger(job_id),
        "simulated",
        60,
        k.send_claim(job_id),
        k.cancel_request(job_id),
        expires_ms,
        partition_of(job_id),
    )


async def deliver(
    sender: SimulatedSender, job_id: str, user: str = "u-1", attempt: int = 1, **mark: Any
) -> SendVerdict:
    email = render("welcome", user, f"<{job_id}@errand.local>")
    return await sender.deliver_once(email, user, attempt, mark_for(sender, job_id, **mark))


async def outbox_ids(sender: SimulatedSender) -> list[str]:
    raw = await sender.redis.lrange(sender.keys.outbox(), 0, -1)
    return [orjson.loads(entry)["messageId"] for entry in raw]


async def test_first_delivery_sends_and_marks_a_second_one_finds_the_ledger(
    sender: SimulatedSender,
) -> None:
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    assert await deliver(sender, job_id) is SendVerdict.GO
    assert await sender.redis.get(sender.keys.sent_ledger(job_id)) == "simulated"
    assert await deliver(sender, job_id) is SendVerdict.ALREADY_SENT
    assert await outbox_ids(sender) == [f"<{job_id}@errand.local>"]


async def test_a_held_claim_a_cancel_flag_or_expiry_sends_nothing(
    sender: SimulatedSender,
) -> None:
    held, canceled, expired = (new_job_id(QueueName.NOTIFICATIONS) for _ in range(3))
    await sender.redis.set(sender.keys.send_claim(held), "another-worker", px=5000)
    await sender.redis.set(sender.keys.cancel_request(canceled), "canceled")
    assert await deliver(sender, held) is SendVerdict.HELD
    assert await deliver(sender, canceled) is SendVerdict.CANCELED
    assert await deliver(sender, expired, expires_ms=now_ms() - 1) is SendVerdict.EXPIRED
    assert await outbox_ids(sender) == []
    for job_id in (held, canceled, expired):
        assert not await sender.redis.exists(sender.keys.sent_ledger(job_id))
    later = new_job_id(QueueName.NOTIFICATIONS)
    assert await deliver(sender, later, expires_ms=now_ms() + 60_000) is SendVerdict.GO


async def test_a_simulated_fault_delivers_nothing_and_a_sent_job_wins_over_it(
    sender: SimulatedSender,
) -> None:
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    with pytest.raises(TransientFailure, match="451"):
        await deliver(sender, job_id, user="flaky-1", attempt=1)
    assert await outbox_ids(sender) == []
    assert not await sender.redis.exists(sender.keys.sent_ledger(job_id))
    await sender.redis.set(sender.keys.sent_ledger(job_id), "simulated")
    assert await deliver(sender, job_id, user="fail-1") is SendVerdict.ALREADY_SENT


async def test_the_outbox_keeps_the_newest_emails_up_to_its_cap(sender: SimulatedSender) -> None:
    sender.outbox_cap = 3
    job_ids = [new_job_id(QueueName.NOTIFICATIONS) for _ in range(5)]
    for job_id in job_ids:
        assert await deliver(sender, job_id) is SendVerdict.GO
    assert await outbox_ids(sender) == [f"<{j}@errand.local>" for j in reversed(job_ids[2:])]

"""Idempotent sending across worker crashes: a worker SIGKILLed after the email went out and
before BullMQ heard about it; the job comes back through the stalled-job check and the
email is not sent twice. Then 300 jobs under random kills."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conftest import drive_chaos, message_id, outbox_ids, stalled_recoveries
from support.processes import Processes, WorkerPool, env_for
from support.smtp_sink import smtp_sink
from support.stack import Stack
from support.waiting import wait_for

NOTIFY_ONLY = ("--queues", "notifications")


async def post_notification(stack: Stack, user: str, kind: str = "welcome") -> str:
    reply = await stack.http.post("/notifications", json={"type": kind, "userId": user})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def notification(stack: Stack, job_id: str) -> dict[str, Any]:
    reply = await stack.http.get(f"/notifications/{job_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def crash_then_recover(
    stack: Stack, procs: Processes, job_id: str, **transport: Any
) -> dict[str, Any]:
    """Run `job_id` on a worker that crashes right after sending, then on a healthy one."""
    crasher = procs.worker(
        env_for(stack.settings, fault_crash_after_send_rate=1.0, **transport),
        *NOTIFY_ONLY,
        name="crasher",
    )
    code = await wait_for(
        lambda: _returncode(crasher),
        lambda c: c is not None,
        timeout_s=30,
        what="the worker to SIGKILL itself after the send",
    )
    assert code == -9, crasher.log()[-3000:]
    assert "crashing after send, before the acknowledgement" in crasher.log()
    assert (await notification(stack, job_id))["status"] == "active"  # the lock still says so

    healer = procs.worker(env_for(stack.settings, **transport), *NOTIFY_ONLY, name="healer")
    final = await wait_for(
        lambda: notification(stack, job_id),
        lambda n: n["status"] == "completed",
        timeout_s=30,
        what="the stalled job to be recovered and completed",
    )
    assert healer.terminate() == 0, healer.log()[-3000:]
    return final


async def _returncode(proc: Any) -> int | None:
    return proc.returncode  # type: ignore[no-any-return]


async def returnvalue(stack: Stack, job_id: str) -> Any:
    import orjson

    raw = await stack.redis.hget(stack.keys.job("notifications", job_id), "returnvalue")
    return orjson.loads(raw) if raw else None


async def test_crash_after_send_is_recovered_without_a_second_email(
    api: Stack, procs: Processes
) -> None:
    job_id = await post_notification(api, "u-crash")
    final = await crash_then_recover(api, procs, job_id)
    assert final["deadLettered"] is False
    assert await returnvalue(api, job_id) == {"sent": False, "reason": "already sent"}
    assert Counter(await outbox_ids(api)) == {message_id(job_id): 1}


async def test_crash_after_smtp_send_is_recovered_without_a_second_email(
    api: Stack, procs: Processes
) -> None:
    async with smtp_sink() as sink:
        job_id = await post_notification(api, "u-crash-smtp", "password-reset")
        transport = {"email_transport": "smtp", "smtp_url": sink.url}
        await crash_then_recover(api, procs, job_id, **transport)
    assert sink.by_message_id() == {message_id(job_id): 1}
    assert await returnvalue(api, job_id) == {"sent": False, "reason": "already sent"}


KILLS = 4  # at every fifth of the way, on any machine speed: see drive_chaos


@pytest.mark.settings(notify_concurrency=8, email_send_ms=20)
async def test_three_hundred_notifications_under_random_kills_send_each_email_once(
    api: Stack, procs: Processes
) -> None:
    jobs = 300
    rng = random.Random(20240603)
    pool = WorkerPool(
        procs, env_for(api.settings, fault_crash_after_send_rate=0.05), 2, NOTIFY_ONLY
    )
    pool.start()
    gate = asyncio.Semaphore(20)

    async def post(n: int) -> str:
        async with gate:
            return await post_notification(api, f"u-chaos-{n}")

    def batch(k: int) -> Callable[[], Awaitable[list[str]]]:
        size = jobs // (KILLS + 1)
        return lambda: asyncio.gather(*(post(n) for n in range(k * size, (k + 1) * size)))

    started = time.monotonic()
    posted = await drive_chaos(
        api,
        pool,
        rng,
        ("notifications",),
        [batch(k) for k in range(KILLS + 1)],
        jobs,
        timeout_s=100,
    )
    elapsed = time.monotonic() - started
    assert all(code == 0 for code in pool.stop())
    ids = [job_id for batch_ids in posted for job_id in batch_ids]
    recovered = await stalled_recoveries(api, "notifications", ids)

    views = await asyncio.gather(*(notification(api, job_id) for job_id in ids))
    assert Counter(v["status"] for v in views) == {"completed": jobs}
    sent = Counter(await outbox_ids(api))
    per_job = Counter(sent[message_id(job_id)] for job_id in ids)
    print(
        f"\n[crash-300] jobs={jobs} external_kills={pool.kills} self_crashes={pool.crashes} "
        f"restarts={pool.restarts} stalled_recoveries={recovered} emails={sum(sent.values())} "
        f"emails_per_job={dict(per_job)} seconds={elapsed:.1f}"
    )
    assert len(ids) == jobs
    assert per_job == {1: jobs}, f"emails per job: {dict(per_job)}"
    assert sum(sent.values()) == jobs
    assert pool.kills == KILLS, "drive_chaos kills by progress: every planned kill happens"
    # Each send crashes its worker with p = 0.05: ~15 of 300 sends, and fewer than 3 with
    # p < 1e-4. Every crash strands the job whose send it followed, at least.
    assert pool.crashes >= 3, "the fault injection must actually have fired"
    assert recovered >= pool.crashes, "the stalled-job check must have recovered them"

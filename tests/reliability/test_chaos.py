"""Chaos: 2,000 notifications and 200 reports through the API into 3 worker processes while a
random worker is SIGKILLed every few seconds and restarted. Nothing may be lost, no email
may go out twice, and GET /admin/queues must tell the same story as the jobs themselves."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from conftest import drive_chaos, message_id, outbox_ids
from support.processes import Processes, WorkerPool, env_for
from support.stack import Stack

NOTIFICATIONS = int(os.environ.get("ERRAND_CHAOS_NOTIFICATIONS", "2000"))
REPORTS = int(os.environ.get("ERRAND_CHAOS_REPORTS", "200"))
WORKERS = 3
KILL_EVERY_S = 3.0
FAIL_EVERY = 50  # every 50th notification goes to a `fail-` user: dead-lettered by design
FLAKY_EVERY = 40  # every 40th to a `flaky-` user: fails twice, then goes out


def recipient(n: int) -> str:
    if n % FAIL_EVERY == 0:
        return f"fail-chaos-{n}"
    if n % FLAKY_EVERY == 0:
        return f"flaky-chaos-{n}"
    return f"u-chaos-{n}"


async def post_all(stack: Stack) -> tuple[list[str], list[str], list[str]]:
    """(notification ids that must complete, ids that must be dead-lettered, report ids)."""
    gate = asyncio.Semaphore(32)
    kinds = ("welcome", "password-reset", "order-confirmed")

    async def post(route: str, body: dict[str, Any]) -> str:
        async with gate:
            reply = await stack.http.post(route, json=body)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["jobId"])

    notes = [
        post("/notifications", {"type": kinds[n % 3], "userId": recipient(n)})
        for n in range(1, NOTIFICATIONS + 1)
    ]
    reports = [
        post("/reports", {"userId": f"u-chaos-{n}", "reportType": "activity"})
        for n in range(1, REPORTS + 1)
    ]
    ids = await asyncio.gather(*notes, *reports)
    note_ids, report_ids = ids[:NOTIFICATIONS], ids[NOTIFICATIONS:]
    doomed = [i for n, i in enumerate(note_ids, 1) if recipient(n).startswith("fail-")]
    sendable = [i for n, i in enumerate(note_ids, 1) if not recipient(n).startswith("fail-")]
    return sendable, doomed, list(report_ids)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.settings(
    email_send_ms=5, report_seconds=0.2, notify_retries=2, notify_backoff_ms=50,
    notify_concurrency=16, report_concurrency=8, lock_duration_ms=2000,
    stalled_interval_ms=1000, max_stalled_count=10,
)
async def test_chaos_loses_nothing_and_sends_every_email_once(
    api: Stack, procs: Processes
) -> None:
    rng = random.Random(7)
    pool = WorkerPool(procs, env_for(api.settings), WORKERS)
    pool.start()
    keys, redis = api.keys, api.redis
    posted = asyncio.Event()

    async def finished() -> bool:
        if not posted.is_set():
            return False
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.queue("notifications", "completed"))
            pipe.zcard(keys.queue("notifications", "failed"))
            pipe.zcard(keys.queue("reports", "completed"))
            done_notes, failed_notes, done_reports = await pipe.execute()
        return bool(
            done_notes + failed_notes == NOTIFICATIONS and done_reports == REPORTS
        )

    # The kills start with the first POST: jobs are taken, lost and recovered while the
    # API still accepts new ones.
    started = time.monotonic()
    chaos = asyncio.create_task(
        drive_chaos(pool, finished, rng, timeout_s=240, kill_every_s=KILL_EVERY_S)
    )
    try:
        sendable, doomed, reports = await post_all(api)
    finally:
        posted.set()
    posted_s = time.monotonic() - started
    await chaos
    elapsed = time.monotonic() - started
    exit_codes = pool.stop()

    gate = asyncio.Semaphore(64)

    async def status(job_id: str) -> str:
        async with gate:
            reply = await api.http.get(f"/jobs/{job_id}")
        return str(reply.json()["status"]) if reply.status_code == 200 else "lost"

    note_status = Counter(await asyncio.gather(*(status(i) for i in sendable)))
    doomed_status = Counter(await asyncio.gather(*(status(i) for i in doomed)))
    report_status = Counter(await asyncio.gather(*(status(i) for i in reports)))
    sent = Counter(await outbox_ids(api))
    per_job = Counter(sent[message_id(i)] for i in sendable)
    doomed_sent = sum(sent[message_id(i)] for i in doomed)
    queues = (await api.http.get("/admin/queues", headers=api.admin)).json()
    by_name = {q["name"]: q for q in queues["queues"]}

    print(
        f"\n[chaos] notifications={NOTIFICATIONS} reports={REPORTS} workers={WORKERS} "
        f"kills={pool.kills} unexpected_exits={pool.crashes} restarts={pool.restarts} "
        f"posted_in={posted_s:.1f}s drained_in={elapsed:.1f}s "
        f"notifications={dict(note_status)} dead_lettered={dict(doomed_status)} "
        f"reports={dict(report_status)} emails={sum(sent.values())} "
        f"emails_per_completed_notification={dict(per_job)} "
        f"admin_notifications={by_name['notifications']} admin_reports={by_name['reports']}"
    )
    assert note_status == {"completed": len(sendable)}
    assert doomed_status == {"failed": len(doomed)}
    assert report_status == {"completed": REPORTS}
    assert per_job == {1: len(sendable)}, "every completed notification sent exactly once"
    assert doomed_sent == 0 and sum(sent.values()) == len(sendable)
    notes_q, reports_q = by_name["notifications"], by_name["reports"]
    assert (notes_q["completed"], notes_q["failed"], notes_q["deadLettered"]) == (
        len(sendable), len(doomed), len(doomed))
    assert (reports_q["completed"], reports_q["failed"]) == (REPORTS, 0)
    for queue in (notes_q, reports_q):
        assert (queue["waiting"], queue["active"], queue["delayed"]) == (0, 0, 0)
    assert pool.kills >= 5, "the chaos must actually have happened"
    assert pool.crashes == 0, "no worker may die except by our SIGKILL"
    assert all(code == 0 for code in exit_codes)

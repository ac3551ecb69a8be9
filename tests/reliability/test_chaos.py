"""Chaos: 2,000 notifications and 200 reports through the API into 3 worker processes while a
random busy worker is SIGKILLed at every ninth of the way (8 kills, on any machine speed)
and restarted. Nothing may be lost, no email may go out twice, and GET /admin/queues must tell
the same story as the jobs themselves."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conftest import drive_chaos, message_id, outbox_ids, stalled_recoveries
from support.processes import Processes, WorkerPool, env_for
from support.stack import Stack

NOTIFICATIONS = int(os.environ.get("ERRAND_CHAOS_NOTIFICATIONS", "2000"))
REPORTS = int(os.environ.get("ERRAND_CHAOS_REPORTS", "200"))
WORKERS = 3
KILLS = 8  # one batch of jobs more than kills: see drive_chaos
FAIL_EVERY = 50  # every 50th notification goes to a `fail-` user: dead-lettered by design
FLAKY_EVERY = 40  # every 40th to a `flaky-` user: fails twice, then goes out

Batch = tuple[list[tuple[int, str]], list[str]]  # ((n, notification id), ...), report ids


def recipient(n: int) -> str:
    if n % FAIL_EVERY == 0:
        return f"fail-chaos-{n}"
    if n % FLAKY_EVERY == 0:
        return f"flaky-chaos-{n}"
    return f"u-chaos-{n}"


def batches(stack: Stack, count: int) -> list[Callable[[], Awaitable[Batch]]]:
    """`count` batches that together POST every notification and report once."""
    gate = asyncio.Semaphore(32)
    kinds = ("welcome", "password-reset", "order-confirmed")

    async def post(route: str, body: dict[str, Any]) -> str:
        async with gate:
            reply = await stack.http.post(route, json=body)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["jobId"])

    def batch(k: int) -> Callable[[], Awaitable[Batch]]:
        async def run() -> Batch:
            notes = range(1 + k * NOTIFICATIONS // count, 1 + (k + 1) * NOTIFICATIONS // count)
            reports = range(1 + k * REPORTS // count, 1 + (k + 1) * REPORTS // count)
            ids = await asyncio.gather(
                *(
                    post("/notifications", {"type": kinds[n % 3], "userId": recipient(n)})
                    for n in notes
                ),
                *(
                    post("/reports", {"userId": f"u-chaos-{n}", "reportType": "activity"})
                    for n in reports
                ),
            )
            return list(zip(notes, ids[: len(notes)], strict=True)), list(ids[len(notes) :])

        return run

    return [batch(k) for k in range(count)]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.settings(
    email_send_ms=5,
    report_seconds=0.2,
    notify_retries=2,
    notify_backoff_ms=50,
    notify_concurrency=16,
    report_concurrency=8,
    lock_duration_ms=2000,
    stalled_interval_ms=1000,
    max_stalled_count=10,
)
async def test_chaos_loses_nothing_and_sends_every_email_once(api: Stack, procs: Processes) -> None:
    rng = random.Random(7)
    pool = WorkerPool(procs, env_for(api.settings), WORKERS)
    pool.start()
    # The kills start with the first POSTs: jobs are taken, lost and recovered while the
    # API still accepts new ones.
    started = time.monotonic()
    posted = await drive_chaos(
        api,
        pool,
        rng,
        ("notifications", "reports"),
        batches(api, KILLS + 1),
        NOTIFICATIONS + REPORTS,
        timeout_s=240,
    )
    elapsed = time.monotonic() - started
    exit_codes = pool.stop()
    notes = [note for batch_notes, _ in posted for note in batch_notes]
    reports = [job_id for _, batch_reports in posted for job_id in batch_reports]
    doomed = [i for n, i in notes if recipient(n).startswith("fail-")]
    sendable = [i for n, i in notes if not recipient(n).startswith("fail-")]
    recovered = await stalled_recoveries(
        api, "notifications", [i for _, i in notes]
    ) + await stalled_recoveries(api, "reports", reports)

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
        f"stalled_recoveries={recovered} seconds={elapsed:.1f} "
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
        len(sendable),
        len(doomed),
        len(doomed),
    )
    assert (reports_q["completed"], reports_q["failed"]) == (REPORTS, 0)
    for queue in (notes_q, reports_q):
        assert (queue["waiting"], queue["active"], queue["delayed"]) == (0, 0, 0)
    assert len(notes) == NOTIFICATIONS and len(reports) == REPORTS
    assert pool.kills == KILLS, "drive_chaos kills by progress: every planned kill happens"
    assert recovered >= 1, "the kills must have taken running jobs down with the workers"
    assert pool.crashes == 0, "no worker may die except by our SIGKILL"
    assert all(code == 0 for code in exit_codes)

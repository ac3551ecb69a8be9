"""Scheduled notifications under worker crashes: 1,000 notifications come due over a few
seconds while worker processes are SIGKILLed at random (and kill themselves right after
a send). Each email goes out exactly once, and none before its sendAt."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from conftest import drive_chaos
from errand.clock import now_ms
from support.processes import Processes, WorkerPool, env_for
from support.stack import Stack

JOBS = 1000
SPREAD_MS = 4000
LEAD_MS = 6000  # posting 1,000 jobs on two shared cores takes a few seconds
KILLS = 6  # at every seventh of the way, on any machine speed: see drive_chaos


def rfc3339(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.slow
@pytest.mark.settings(notify_concurrency=16, email_send_ms=5)
async def test_thousand_scheduled_notifications_under_kills_sent_once_none_early(
    api: Stack, procs: Processes
) -> None:
    rng = random.Random(20260601)
    base_ms = now_ms() + LEAD_MS
    send_at = {n: base_ms + n * SPREAD_MS // JOBS for n in range(JOBS)}
    gate = asyncio.Semaphore(20)

    async def post(n: int) -> str:
        body = {"type": "welcome", "userId": f"u-due-{n}", "sendAt": rfc3339(send_at[n])}
        async with gate:
            reply = await api.http.post("/notifications", json=body)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["jobId"])

    ids = await asyncio.gather(*(post(n) for n in range(JOBS)))
    posted_ms = now_ms()
    pool = WorkerPool(
        procs,
        env_for(api.settings, fault_crash_after_send_rate=0.01),
        3,
        ("--queues", "notifications"),
    )
    pool.start()

    async def nothing_more() -> None:
        """Every job is in before the workers start: the kills land while they come due."""

    started = time.monotonic()
    await drive_chaos(
        api, pool, rng, ("notifications",), [nothing_more] * (KILLS + 1), JOBS, timeout_s=180
    )
    elapsed = time.monotonic() - started
    assert all(code == 0 for code in pool.stop())

    records = [orjson.loads(r) for r in await api.outbox_raw()]
    sent_at: dict[str, list[int]] = {}
    for record in records:
        job_id = record["messageId"].strip("<>").split("@")[0]
        sent_at.setdefault(job_id, []).append(epoch_ms(record["sentAt"]))
    per_job = Counter(len(sent_at.get(job_id, [])) for job_id in ids)
    early = [
        (job_id, send_at[n] - min(sent_at[job_id]))
        for n, job_id in enumerate(ids)
        if job_id in sent_at and min(sent_at[job_id]) < send_at[n]
    ]
    late_ms = sorted(
        min(sent_at[job_id]) - max(send_at[n], posted_ms)
        for n, job_id in enumerate(ids)
        if job_id in sent_at
    )
    print(
        f"\n[scheduled-crash] jobs={JOBS} kills={pool.kills} self_crashes={pool.crashes} "
        f"restarts={pool.restarts} emails={len(records)} posted_after_base_ms="
        f"{posted_ms - base_ms} p50_late_ms={late_ms[len(late_ms) // 2]} "
        f"max_late_ms={late_ms[-1]} seconds={elapsed:.1f}"
    )
    assert per_job == {1: JOBS}, f"emails per job: {dict(per_job)}"
    assert early == [], f"sent before sendAt (job, ms early): {early[:10]}"
    assert pool.kills == KILLS, "drive_chaos kills by progress: every planned kill happens"

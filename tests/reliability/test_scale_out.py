"""Scale-out knobs: `errand worker --queues ... --concurrency N` runs exactly those queues
at that concurrency, and dedicated worker pools per queue share the work."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import pytest

from support.processes import Processes, env_for, wait_log
from support.stack import Stack
from support.waiting import wait_for


async def admin_queues(stack: Stack) -> dict[str, Any]:
    reply = await stack.http.get("/admin/queues", headers=stack.admin)
    assert reply.status_code == 200
    return dict(reply.json())


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The most jobs running at one instant, from their startedAt/finishedAt (a job that
    starts the millisecond another finishes took its slot)."""
    edges = sorted(
        (datetime.fromisoformat(job[field].replace("Z", "+00:00")), step)
        for job in jobs
        for field, step in (("startedAt", 1), ("finishedAt", -1))
    )
    return max(itertools.accumulate(step for _, step in edges))


@pytest.mark.settings(report_seconds=1.0)
async def test_dedicated_worker_pools_per_queue(api: Stack, procs: Processes) -> None:
    env = env_for(api.settings)
    reports = procs.worker(env, "--queues", "reports", "--concurrency", "3", name="reports")
    mail = procs.worker(env, "--queues", "notifications,webhooks", name="mail")
    for proc in (reports, mail):
        wait_log(proc, " started on ", timeout_s=30)
    body = await wait_for(
        lambda: admin_queues(api),
        lambda b: len(b["workers"]) == 2,
        timeout_s=15,
        what="two worker heartbeats",
    )
    assert {q["name"]: q["workers"] for q in body["queues"]} == {
        "reports": 1,
        "notifications": 1,
        "webhooks": 1,
    }

    posted = await asyncio.gather(
        *(
            api.http.post("/reports", json={"userId": f"u-scale-{n}", "reportType": "activity"})
            for n in range(6)
        )
    )
    ids = [r.json()["jobId"] for r in posted]

    finals = [
        f.json()
        for f in await asyncio.gather(
            *(api.http.get(f"/jobs/{i}", params={"wait": 20}) for i in ids)
        )
    ]
    assert {f["status"] for f in finals} == {"completed"}
    # Concurrency 3: three of the six one-second reports ran at once, never more.
    assert most_at_once(finals) == 3, [(f["startedAt"], f["finishedAt"]) for f in finals]
    assert "reports" in reports.log() and "rep_" not in mail.log()
    assert reports.terminate() == 0 and mail.terminate() == 0

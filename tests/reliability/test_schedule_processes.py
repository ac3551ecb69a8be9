"""A schedule runs once per tick with 2 API and 3 worker processes (both engines among the
workers), and not at all once deleted through the other API process."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import httpx
import orjson

from errand.jobids import schedule_of
from errand.server.embedded import free_port
from support.processes import Processes, env_for, wait_log, wait_ready
from support.stack import Stack
from support.waiting import wait_for

EVERY_SECOND = {"every": 1, "job": {"queue": "notifications", "type": "welcome", "userId": 9}}


async def sent_runs(stack: Stack, schedule_id: str) -> Counter[str]:
    """Emails in the simulated outbox per run of the schedule (Message-ID <run id, dotted>)."""
    counts: Counter[str] = Counter()
    for raw in await stack.outbox_raw():
        message_id = orjson.loads(raw)["messageId"]
        run_id = message_id.strip("<>").partition("@")[0].replace(".", ":")
        if schedule_of(run_id) == schedule_id:
            counts[run_id] += 1
    return counts


async def create(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    reply = await http.post("/schedules", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["scheduleId"])


async def test_one_run_per_tick_across_processes_and_none_after_delete(
    api: Stack, procs: Processes
) -> None:
    env = env_for(api.settings)
    workers = [
        procs.worker(env, name="worker-fast-1"),
        procs.worker(env, name="worker-fast-2"),
        procs.worker(env_for(api.settings, worker_engine="bullmq"), name="worker-bullmq"),
    ]
    ports = [free_port(), free_port()]
    apis = [procs.api(port, env, "--workers", "1") for port in ports]
    for proc in workers:
        wait_log(proc, " started on ", timeout_s=60)
    for port, proc in zip(ports, apis, strict=True):
        wait_ready(f"http://127.0.0.1:{port}", proc)
    first, second = (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=30, auth=api.http.auth)
        for p in ports
    )
    async with first, second:
        schedule_id = await create(first, EVERY_SECOND)
        sent = await wait_for(
            lambda: sent_runs(api, schedule_id),
            lambda c: len(c) >= 6,
            timeout_s=30,
            what="six runs sent",
        )
        assert set(sent.values()) == {1}, f"a run sent twice: {sent}"
        ticks = sorted(int(run.rpartition(":")[2]) for run in sent)
        assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * (len(ticks) - 1)
        seen_by_other = (await second.get(f"/schedules/{schedule_id}")).json()
        assert seen_by_other["lastJobId"] is not None

        assert (await second.delete(f"/schedules/{schedule_id}")).status_code == 204
        existing = {
            job_id
            for state in ("wait", "active")
            for job_id in await api.members("notifications", state)
        } | set((await sent_runs(api, schedule_id)).keys())
        witness = await create(first, EVERY_SECOND)
        await wait_for(
            lambda: sent_runs(api, witness),
            lambda c: len(c) >= 3,
            timeout_s=30,
            what="three runs of another schedule",
        )
        after = await sent_runs(api, schedule_id)
        assert set(after) <= existing, "a run started after DELETE"
        assert set(after.values()) == {1}
        assert (await first.get(f"/schedules/{schedule_id}")).status_code == 404
    for proc in workers:  # the API processes are stopped by the fixture
        assert proc.terminate() == 0, proc.log()

"""Graceful shutdown on SIGTERM: workers finish or hand back their jobs, the API drains.

Workers run as real `errand worker` subprocesses, so the signal handling is the real
one. "Nothing lost, nothing run twice" is checked on the side effect (the simulated
outbox: one message per job) and on BullMQ's own per-job counters (`ats`: attempts
started, `atm`: attempts made).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from errand.jobids import QueueName
from errand.server.embedded import free_port
from errand.settings import Settings
from support.processes import ErrandProcess, Processes, errand_env, processes
from support.stack import Stack, run_stack
from support.waiting import wait_for

SLOW_LOCK = {"lock_duration_ms": 30000, "stalled_interval_ms": 30000}  # no stall rescue in time


def worker_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The stack's store and auth mode: an `errand api` started with it knows the stack's key."""
    return errand_env(
        redis_url=settings.redis_url,
        queue_prefix=settings.queue_prefix,
        auth=settings.auth.value,
        **overrides,
    )


@contextlib.asynccontextmanager
async def api_only(make_settings: Any, **overrides: Any) -> AsyncIterator[Stack]:
    async with run_stack(make_settings(**overrides), with_worker=False) as stack:
        yield stack


async def notify(stack: Stack, user: str) -> str:
    reply = await stack.http.post("/notifications", json={"type": "welcome", "userId": user})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def report(stack: Stack, user: str) -> str:
    reply = await stack.http.post("/reports", json={"userId": user, "reportType": "activity"})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def active_ids(stack: Stack, queue: QueueName) -> list[str]:
    keys = stack.keys
    return [
        job_id
        for p in range(keys.partitions)
        for job_id in await stack.redis.lrange(keys.queue(queue, "active", p), 0, -1)
    ]


async def waiting_ids(stack: Stack, queue: QueueName) -> set[str]:
    keys, found = stack.keys, set()
    for p in range(keys.partitions):
        found.update(await stack.redis.lrange(keys.queue(queue, "wait", p), 0, -1))
        found.update(await stack.redis.zrange(keys.queue(queue, "prioritized", p), 0, -1))
    return found


async def attempt_counters(stack: Stack, queue: QueueName, job_id: str) -> tuple[int, int]:
    """(attempts started, attempts made) as BullMQ keeps them in the job hash."""
    started, made = await stack.redis.hmget(stack.keys.job(queue, job_id), "ats", "atm")
    return int(started or 0), int(made or 0)


async def outbox_counts(stack: Stack) -> Counter[str]:
    raw = await stack.outbox_raw()
    return Counter(orjson.loads(item)["messageId"].strip("<>").split("@")[0] for item in raw)


async def statuses(stack: Stack, job_ids: list[str]) -> dict[str, str]:
    views = [(await stack.http.get(f"/jobs/{j}")).json() for j in job_ids]
    return {v["jobId"]: v["status"] for v in views}


async def exit_code(proc: ErrandProcess, timeout_s: float) -> int:
    return await asyncio.to_thread(proc.wait, timeout_s)


def start_worker(procs: Processes, settings: Settings, queues: str, **env: Any) -> ErrandProcess:
    return procs.worker(worker_env(settings, **env), "--queues", queues, "--concurrency", "2")


async def test_sigterm_lets_active_jobs_finish_and_takes_no_new_ones(
    make_settings: Any, tmp_path: Path
) -> None:
    async with api_only(make_settings) as stack:
        jobs = [await notify(stack, f"u-drain-{n}") for n in range(4)]
        with processes(tmp_path) as procs:
            worker = start_worker(
                procs,
                stack.settings,
                "notifications",
                email_send_ms=1500,
                shutdown_grace_seconds=20,
            )
            running = await wait_for(
                lambda: active_ids(stack, QueueName.NOTIFICATIONS),
                lambda ids: len(ids) == 2,
                timeout_s=30,
                what="two jobs active in the subprocess",
            )
            worker.send(signal.SIGTERM)
            assert await exit_code(worker, 30) == 0, worker.log()[-3000:]

        assert await active_ids(stack, QueueName.NOTIFICATIONS) == []
        finished = await statuses(stack, jobs)
        assert {j for j, s in finished.items() if s == "completed"} == set(running)
        untouched = set(jobs) - set(running)
        assert await waiting_ids(stack, QueueName.NOTIFICATIONS) == untouched
        for job_id in untouched:
            assert await attempt_counters(stack, QueueName.NOTIFICATIONS, job_id) == (0, 0)

        await stack.start_worker([QueueName.NOTIFICATIONS])
        await wait_for(
            lambda: statuses(stack, jobs),
            lambda s: set(s.values()) == {"completed"},
            what="all sent",
        )
        assert await outbox_counts(stack) == Counter({job_id: 1 for job_id in jobs})
        for job_id in jobs:
            assert await attempt_counters(stack, QueueName.NOTIFICATIONS, job_id) == (1, 1)


@pytest.mark.parametrize("engine", ["bullmq", "fast"])
async def test_after_the_grace_unfinished_jobs_are_handed_back_at_once(
    make_settings: Any, tmp_path: Path, engine: str
) -> None:
    async with api_only(make_settings) as stack:
        # one user, one partition: `--concurrency 2` bounds bullmq's Worker per partition
        notes = [await notify(stack, "u-cut") for _ in range(3)]
        rep = await report(stack, "u-cut")
        with processes(tmp_path) as procs:
            worker = start_worker(
                procs,
                stack.settings,
                "notifications,reports",
                email_send_ms=60_000,
                report_seconds=60,
                shutdown_grace_seconds=0.5,
                worker_engine=engine,
                **SLOW_LOCK,
            )

            async def running() -> tuple[list[str], list[str]]:
                return (
                    await active_ids(stack, QueueName.NOTIFICATIONS),
                    await active_ids(stack, QueueName.REPORTS),
                )

            cut, _ = await wait_for(
                running,
                lambda r: len(r[0]) == 2 and len(r[1]) == 1,
                timeout_s=30,
                what="three jobs running in the subprocess",
            )
            signalled = time.monotonic()
            worker.send(signal.SIGTERM)
            assert await exit_code(worker, 30) == 0, worker.log()[-3000:]
            assert time.monotonic() - signalled < 10, "the grace period was not enforced"
            log = worker.log()

        # Back in the queue the moment the worker is gone: no lock expiry, no stall check.
        assert await running() == ([], [])
        assert await waiting_ids(stack, QueueName.NOTIFICATIONS) == set(notes)
        assert await waiting_ids(stack, QueueName.REPORTS) == {rep}
        for job_id in cut:
            assert job_id in log and "handed back to wait" in log
            # The attempt that was cut short does not count against the job.
            assert await attempt_counters(stack, QueueName.NOTIFICATIONS, job_id) == (1, 0)
        assert await outbox_counts(stack) == Counter()

        taken_over = time.monotonic()
        await stack.start_worker([QueueName.NOTIFICATIONS, QueueName.REPORTS])
        everything = [*notes, rep]
        await wait_for(
            lambda: statuses(stack, everything),
            lambda s: set(s.values()) == {"completed"},
            what="all done elsewhere",
        )
        lock_s = SLOW_LOCK["lock_duration_ms"] / 1000
        assert time.monotonic() - taken_over < lock_s / 3, "picked up only after a stall"
        assert await outbox_counts(stack) == Counter({job_id: 1 for job_id in notes})
        for job_id in notes:
            _, made = await attempt_counters(stack, QueueName.NOTIFICATIONS, job_id)
            assert made == 1
        result = await stack.http.get(f"/reports/{rep}/result")
        assert result.status_code == 200


async def test_sigterm_drains_the_api_in_flight_requests_then_exits(
    make_settings: Any, tmp_path: Path
) -> None:
    async with api_only(make_settings) as stack:
        job_id = await report(stack, "u-api-drain")  # no worker: it stays waiting
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with processes(tmp_path) as procs:
            # One API process: the log-order assertion below reads a single process's log
            # (`errand api` runs one process per core by default).
            api = procs.api(
                port, worker_env(stack.settings, shutdown_grace_seconds=10), "--workers", "1"
            )
            async with httpx.AsyncClient(base_url=base, timeout=30, auth=stack.http.auth) as http:

                async def ready() -> int | None:
                    assert api.alive, api.log()[-3000:]
                    with contextlib.suppress(httpx.TransportError):
                        return (await http.get("/readyz")).status_code
                    return None

                await wait_for(ready, lambda s: s == 200, timeout_s=30, what="API ready")
                long_poll = asyncio.create_task(http.get(f"/jobs/{job_id}", params={"wait": 3}))

                async def in_flight() -> float:
                    text = (await http.get("/metrics")).text
                    line = next(
                        x
                        for x in text.splitlines()
                        if x.startswith("errand_http_requests_in_flight ")
                    )
                    return float(line.split()[1])

                await wait_for(in_flight, lambda n: n >= 2, what="the long poll in flight")
                api.send(signal.SIGTERM)

                async def refused() -> bool:
                    async with httpx.AsyncClient(timeout=1) as fresh:
                        try:
                            await fresh.get(f"{base}/healthz")
                        except httpx.TransportError:
                            return True
                    return False

                await wait_for(refused, what="new connections refused")
                assert not long_poll.done(), "the in-flight request was cut short"
                reply = await long_poll
            assert reply.status_code == 200
            assert reply.json()["status"] == "waiting"
            # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly, so the
            # exit status tells a process manager it ended on that signal.
            assert await exit_code(api, 30) in (0, -signal.SIGTERM), api.log()[-3000:]
            log = api.log()
            # The in-flight request was answered above; the lifespan then closed cleanly.
            assert log.index("Application shutdown complete") < log.index(
                "Finished server process"
            ), log

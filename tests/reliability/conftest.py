"""Fixtures for crash, chaos, outage and scale tests: an API without in-loop workers, and
worker processes the test starts, kills and restarts by pid."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from errand.jobids import QueueName
from support.cluster import ValkeyCluster
from support.processes import Processes, WorkerPool, processes
from support.stack import Stack, run_stack
from support.waiting import wait_for

T = TypeVar("T")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as started:
        yield started


@pytest.fixture
async def api(make_settings: Any, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The API over real HTTP on the session's Valkey, with no worker: tests run their own."""
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    async with run_stack(make_settings(**overrides), with_worker=False) as stack:
        yield stack


async def outbox_ids(stack: Stack) -> list[str]:
    """Message-IDs in the simulated outbox (one entry per email that went out)."""
    raw = await stack.outbox_raw()
    return [orjson.loads(item)["messageId"] for item in raw]


def message_id(job_id: str) -> str:
    return f"<{job_id}@errand.local>"


async def stalled_recoveries(stack: Stack, queue: str, job_ids: Sequence[str]) -> int:
    """How often the stalled-job check took one of `job_ids` back from a dead worker (the
    sum of BullMQ's per-job `stc` counters): every kill of a busy worker adds at least one."""
    async with stack.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(stack.keys.job(QueueName(queue), job_id), "stc")
        counts = await pipe.execute()
    return sum(int(n or 0) for n in counts)


async def finished_jobs(stack: Stack, queues: Sequence[str]) -> int:
    """Jobs completed or failed (for good) on `queues`."""
    async with stack.redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            for p in range(stack.keys.partitions):
                pipe.zcard(stack.keys.queue(queue, "completed", p))
                pipe.zcard(stack.keys.queue(queue, "failed", p))
        return sum(await pipe.execute())


async def busy_pids(stack: Stack, queues: Sequence[str]) -> set[int]:
    """Pids of the worker processes running a job on `queues` now: BullMQ records the
    worker's name, `host:pid:suffix`, in the `pb` field of every job it takes."""
    active = [
        (queue, job_id)
        for queue in queues
        for p in range(stack.keys.partitions)
        for job_id in await stack.redis.lrange(stack.keys.queue(queue, "active", p), 0, -1)
    ]
    async with stack.redis.pipeline(transaction=False) as pipe:
        for queue, job_id in active:
            pipe.hget(stack.keys.job(QueueName(queue), job_id), "pb")
        names = await pipe.execute()
    return {int(name.split(":")[-2]) for name in names if name}


async def drive_chaos(
    stack: Stack,
    pool: WorkerPool,
    rng: random.Random,
    queues: Sequence[str],
    batches: Sequence[Callable[[], Awaitable[T]]],
    total: int,
    timeout_s: float,
) -> list[T]:
    """Post `batches` while SIGKILLing a random worker at `len(batches) - 1` marks of
    progress and restarting the dead ones, until all `total` jobs on `queues` finished;
    the batches' results, in order.

    The kills are tied to progress, not to the clock, so their number does not depend on
    how fast the machine is. With `step = total / len(batches)`, kill k is due once
    `step * (k - 1)` jobs finished; batches 0 and 1 are posted at once, batch k + 1 only
    after kill k landed, so the run cannot finish before every planned kill happened. The
    victim is a worker running a job (it strands work for the stalled-job check to
    recover) unless every posted batch is in already (a late kill; then any worker), and
    one that has finished starting: a kill that finds none is retried on the next tick.
    """
    planned = len(batches) - 1
    step = total / len(batches)
    posts: list[asyncio.Future[T]] = []

    def post_next() -> None:
        if len(posts) < len(batches):
            posts.append(asyncio.ensure_future(batches[len(posts)]()))

    async def tick() -> bool:
        pool.revive()
        for task in posts:
            if task.done() and task.exception() is not None:
                task.result()  # a refused POST fails the test now, not at the deadline
        done = await finished_jobs(stack, queues)
        if pool.kills < planned and done >= pool.kills * step:
            # With every batch so far posted, the work may be done: any worker will do.
            busy = None if all(t.done() for t in posts) else await busy_pids(stack, queues)
            if pool.kill_random(rng, busy) is not None:
                post_next()
        return pool.kills == planned and done >= total and all(t.done() for t in posts)

    post_next()
    post_next()
    try:
        await wait_for(tick, timeout_s=timeout_s, what=f"every job to finish after {planned} kills")
        return [task.result() for task in posts]
    finally:
        for task in posts:
            task.cancel()


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

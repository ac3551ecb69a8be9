"""A burst of delayed jobs due at the same moment, through the fast engine's partitions.

BullMQ promotes due delayed jobs inside each fetch (up to 1,000 a fetch); the fast
engine lets one such fetch run at a time per queue (engine/promotion.py). These pin
that, and that every job still runs once and never before it is due.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from errand.clock import now_ms
from errand.engine.fastloop import FastWorker
from errand.engine.gate import SlotGate
from errand.redisio.connection import is_cluster
from errand.redisio.pipelined import pipelined_from_url
from errand.settings import Settings
from support.waiting import wait_for

QUEUE = "notifications"
PER_PARTITION = 1500  # two promotions each; its events (6 a job) fit the stream's 10,000
LEAD_MS = 2500  # the fill and the workers' start fit before the jobs are due


class FetchWatch:
    """Wraps the workers' fetching scripts: when each fetch ran, and for which partition."""

    def __init__(self) -> None:
        self.in_flight = self.most_in_flight = 0
        self.fetches: list[tuple[int, int, str]] = []  # (start ms, end ms, prefix)

    def watch(self, worker: FastWorker, prefix: str) -> None:
        for name in ("moveToActive", "moveToFinished"):
            worker._lua[name] = self._wrap(worker._lua[name], name, prefix)

    def _wrap(self, script: Any, name: str, prefix: str) -> Any:
        async def call(keys: list[str], args: list[Any]) -> Any:
            if name == "moveToFinished" and args[5] != "1":
                return await script(keys, args)  # no fetchNext: it promotes nothing
            start, self.in_flight = now_ms(), self.in_flight + 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                return await script(keys, args)
            finally:
                self.in_flight -= 1
                self.fetches.append((start, now_ms(), prefix))

        return call

    def promoting(self, promoted: dict[str, list[int]]) -> list[tuple[int, int, str]]:
        """The fetches that promoted jobs: a promotion of their partition ran within them."""
        return sorted(
            (start, end, prefix)
            for start, end, prefix in self.fetches
            if any(start <= ms <= end for ms in promoted[prefix])
        )


async def _promotions_ms(plain: Any, prefix: str) -> list[int]:
    """When each job was promoted (its "waiting" event's id, Valkey's clock in ms)."""
    events = await plain.xrange(f"{prefix}:{QUEUE}:events")
    promoted = [int(i.split("-")[0]) for i, e in events if e.get("prev") == "delayed"]
    assert len(promoted) == PER_PARTITION, "every promotion is still in the events stream"
    return promoted


@pytest.fixture
async def redis_clients(make_settings: Any) -> Any:
    settings: Settings = make_settings()
    if is_cluster(settings):
        # These drive partitions' workers with one single-server client; on a cluster the
        # same engine code runs through test_fastloop.py's SlotRedis clients.
        pytest.skip("single-server clients (ERRAND_TEST_CLUSTER=1 runs a cluster)")
    client = pipelined_from_url(settings.redis_url, decode_responses=True)
    plain = aioredis.from_url(settings.redis_url, decode_responses=True)
    yield settings, client, plain
    await client.aclose()
    await plain.aclose()


async def test_a_due_burst_runs_each_job_once_not_early_one_promoting_fetch_at_a_time(
    redis_clients: Any,
) -> None:
    settings, client, plain = redis_clients
    prefixes = [settings.queue_prefix, settings.queue_prefix + "-p1"]
    due_ms = now_ms() + LEAD_MS
    for p, prefix in enumerate(prefixes):
        queue = Queue(QUEUE, {"connection": plain, "prefix": prefix})
        jobs = [
            {"name": "n", "data": {}, "opts": {"jobId": f"{p}-{i}"}} for i in range(PER_PARTITION)
        ]
        delay = due_ms - now_ms()
        await queue.addBulk([{**j, "opts": {**j["opts"], "delay": delay}} for j in jobs])
    ran: list[tuple[str, int]] = []

    async def record(job: Any, token: str) -> None:
        ran.append((job.id, now_ms()))

    gate, watch, workers = SlotGate(8), FetchWatch(), []
    for prefix in prefixes:
        opts = {"connection": settings.redis_url, "prefix": prefix, "concurrency": 8}
        workers.append(FastWorker(QUEUE, record, {**opts, "autorun": False}, client, gate))
        watch.watch(workers[-1], prefix)
    runs = [asyncio.ensure_future(w.run()) for w in workers]
    try:
        await wait_for(
            lambda: asyncio.sleep(0, len(ran)),
            lambda n: n >= 2 * PER_PARTITION,
            timeout_s=LEAD_MS / 1000 + 30,
            what="every job run",
        )
    finally:
        for w in workers:
            await w.close()
        await asyncio.gather(*runs, return_exceptions=True)
    assert sorted(i for i, _ in ran) == sorted(
        f"{p}-{i}" for p in (0, 1) for i in range(PER_PARTITION)
    )
    assert min(started for _, started in ran) >= due_ms, "a job ran before it was due"
    promoted = {prefix: await _promotions_ms(plain, prefix) for prefix in prefixes}
    promoting = watch.promoting(promoted)
    assert len(promoting) >= 2 * PER_PARTITION // 1000, "each fetch promotes at most 1,000"
    overlaps = [(a, b) for a, b in itertools.pairwise(promoting) if b[0] < a[1]]
    assert not overlaps, f"promoting fetches overlapped: {overlaps[:3]}"
    assert watch.most_in_flight > 1, "fetches that promote nothing still run side by side"


async def test_an_idle_worker_wakes_when_a_delayed_job_is_due_past_its_longest_block(
    redis_clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delay marker is popped once; after a BZPOPMIN capped short of the due time the
    next one must still end at the due time, not drainDelay later."""
    monkeypatch.setattr("errand.engine.marker.MAX_BLOCK_S", 1.0)
    settings, client, plain = redis_clients
    queue = Queue(QUEUE, {"connection": plain, "prefix": settings.queue_prefix})
    await queue.add("n", {}, {"jobId": "late", "delay": 2500})
    score = await plain.zscore(f"{settings.queue_prefix}:{QUEUE}:delayed", "late")
    due_ms = int(score) // 0x1000
    ran: list[int] = []

    async def record(job: Any, token: str) -> None:
        ran.append(now_ms())

    opts = {"connection": settings.redis_url, "prefix": settings.queue_prefix}
    worker = FastWorker(QUEUE, record, {**opts, "concurrency": 4, "autorun": False}, client)
    run = asyncio.ensure_future(worker.run())
    try:
        await wait_for(lambda: asyncio.sleep(0, ran), timeout_s=15, what="the delayed job run")
    finally:
        await worker.close()
        await run
    assert due_ms <= ran[0] < due_ms + 1000, f"ran {ran[0] - due_ms} ms after it was due"

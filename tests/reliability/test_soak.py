"""Load soak: steady mixed traffic on loopback against `errand api` + 2 `errand worker`
processes; RSS of every process is sampled and its slope reported, and Redis memory must
stay bounded by the retention settings.

ERRAND_SOAK_SECONDS sets the duration (default 60 s, as in CI; 600 s is the documented
long run). ERRAND_SOAK_RPS sets the request rate (default 40).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from errand.jobids import QueueName
from errand.keys import Keys
from errand.server.embedded import EmbeddedValkey, free_port
from support.processes import Processes, env_for, rss_bytes, wait_log, wait_ready
from support.stack import test_settings as settings_for
from support.waiting import wait_for

SOAK_S = float(os.environ.get("ERRAND_SOAK_SECONDS", "60"))
RPS = float(os.environ.get("ERRAND_SOAK_RPS", "40"))
SAMPLE_EVERY_S = 2.0
RETENTION_S = 10
MIB = 1024 * 1024


@dataclass
class Samples:
    at: list[float] = field(default_factory=list)
    rss: dict[str, list[int]] = field(default_factory=dict)
    redis_used: list[int] = field(default_factory=list)
    redis_minus_capped: list[int] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)


def slope_per_min(xs: list[float], ys: list[int]) -> float:
    """Least-squares slope of ys over xs (seconds), in units per minute."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return 60 * cov / var if var else 0.0


@pytest.fixture
async def soak_valkey(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def traffic(http: httpx.AsyncClient, until: float, counts: Counter[str]) -> None:
    """Mixed requests at RPS until `until`: posts, status reads, idempotent replays."""
    rng = random.Random(42)
    recent: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(64)

    async def one(n: int) -> None:
        roll = rng.random()
        async with gate:
            if roll < 0.45:
                user = f"fail-{n}" if n % 25 == 0 else f"u-soak-{rng.randrange(5000)}"
                reply = await http.post("/notifications", json={"type": "welcome", "userId": user})
            elif roll < 0.65:
                body = {"userId": f"u-soak-{rng.randrange(300)}", "reportType": "activity"}
                reply = await http.post("/reports", json=body)
            elif roll < 0.75:
                key = f"soak-{rng.randrange(200)}"
                body = {"type": "order-confirmed", "userId": key}
                reply = await http.post(
                    "/notifications", json=body, headers={"Idempotency-Key": key}
                )
            elif recent:
                reply = await http.get(f"/jobs/{rng.choice(recent)}")
            else:
                reply = await http.get("/healthz")
        counts[f"{reply.request.method} {reply.status_code}"] += 1
        if reply.status_code == 202:
            recent.append(reply.json()["jobId"])
            del recent[:-500]

    n = 0
    start = time.monotonic()
    while time.monotonic() < until:
        n += 1
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        # Pace to the target rate: the next request is due at start + n / RPS.
        await asyncio.sleep(max(0.0, start + n / RPS - time.monotonic()))
    await asyncio.gather(*tasks)


async def sample(samples: Samples, pids: dict[str, int], redis: Any, keys: Keys, t0: float) -> None:
    info = await redis.info("memory")
    # Two structures are capped by count, not by age: the simulated outbox (10,000
    # emails) and BullMQ's per-queue event streams (~10,000 entries each).
    capped = [
        *keys.outboxes(),
        *(keys.events(q, p) for q in QueueName for p in range(keys.partitions)),
    ]
    outbox = sum([await redis.memory_usage(key) or 0 for key in capped])
    samples.at.append(time.monotonic() - t0)
    for name, pid in pids.items():
        samples.rss.setdefault(name, []).append(rss_bytes(pid))
    samples.redis_used.append(int(info["used_memory"]))
    samples.redis_minus_capped.append(int(info["used_memory"]) - int(outbox))
    samples.keys.append(int(await redis.dbsize()))


@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 180)
async def test_soak_memory_stays_flat_and_redis_is_bounded_by_retention(
    soak_valkey: EmbeddedValkey, procs: Processes
) -> None:
    settings = settings_for(
        soak_valkey.url,
        email_send_ms=20,
        report_seconds=0.2,
        keep_completed_seconds=RETENTION_S,
        keep_failed_seconds=RETENTION_S,
        result_ttl_seconds=RETENTION_S,
        idempotency_ttl_seconds=RETENTION_S,
        sent_ledger_ttl_seconds=RETENTION_S,
        notify_retries=1,
        notify_backoff_ms=100,
    )
    env = env_for(settings)
    port = free_port()
    api = procs.api(port, env, "--workers", "1")  # one process: its pid is the server
    workers = [procs.worker(env, name=f"worker{n}") for n in range(2)]
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, api)
    for worker in workers:
        wait_log(worker, " started on ", timeout_s=30)
    pids = {"api": api.pid, **{f"worker{n}": w.pid for n, w in enumerate(workers)}}
    redis = aioredis.from_url(soak_valkey.url, decode_responses=True)
    keys = Keys(settings.queue_prefix, settings.partitions)
    samples, counts = Samples(), Counter[str]()
    t0 = time.monotonic()
    until = t0 + SOAK_S
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=30, limits=httpx.Limits(max_connections=64)
        ) as http:
            load = asyncio.create_task(traffic(http, until, counts))

            async def tick() -> bool:
                await sample(samples, pids, redis, keys, t0)
                return load.done()

            # One sample per SAMPLE_EVERY_S while the load runs (wait_for polls the probe).
            next_at = [t0]

            async def paced() -> bool:
                if time.monotonic() >= next_at[0]:
                    next_at[0] += SAMPLE_EVERY_S
                    return await tick()
                return load.done()

            await wait_for(paced, timeout_s=SOAK_S + 60, what="the soak to finish")
            await load

            async def backlog() -> int:
                total = 0
                for queue in ("reports", "notifications", "webhooks"):
                    for p in range(keys.partitions):
                        total += await redis.llen(keys.queue(queue, "wait", p))
                        total += await redis.zcard(keys.queue(queue, "prioritized", p))
                        total += await redis.llen(keys.queue(queue, "active", p))
                return int(total)

            await wait_for(backlog, lambda n: n == 0, timeout_s=60, what="the backlog drained")
    finally:
        await redis.aclose()

    half = len(samples.at) // 2
    late_at = samples.at[half:]
    rss_slopes = {
        name: slope_per_min(late_at, values[half:]) / MIB for name, values in samples.rss.items()
    }
    redis_slope = slope_per_min(late_at, samples.redis_minus_capped[half:]) / MIB
    keys_slope = slope_per_min(late_at, samples.keys[half:])
    print(
        f"\n[soak] seconds={SOAK_S:g} rps={RPS:g} requests={dict(counts)}\n"
        f"  rss MiB first/last: "
        + ", ".join(f"{n}={v[0] / MIB:.1f}/{v[-1] / MIB:.1f}" for n, v in samples.rss.items())
        + "\n  rss slope (second half) MiB/min: "
        + ", ".join(f"{n}={s:+.2f}" for n, s in rss_slopes.items())
        + f"\n  redis used_memory MiB first/peak/last: {samples.redis_used[0] / MIB:.1f}/"
        f"{max(samples.redis_used) / MIB:.1f}/{samples.redis_used[-1] / MIB:.1f}"
        f" (without the count-capped outbox and event streams: "
        f"{samples.redis_minus_capped[0] / MIB:.1f}/{max(samples.redis_minus_capped) / MIB:.1f}/"
        f"{samples.redis_minus_capped[-1] / MIB:.1f}, slope {redis_slope:+.2f} MiB/min)"
        f"\n  keys first/peak/last: {samples.keys[0]}/{max(samples.keys)}/{samples.keys[-1]}"
        f" (slope {keys_slope:+.0f}/min)"
    )
    assert not [k for k in counts if k.split()[1].startswith("5")], counts
    assert all(w.alive for w in workers) and api.alive
    for name, per_min in rss_slopes.items():
        assert per_min < 4.0, f"{name} RSS grows {per_min:.2f} MiB/min"
    # Retention: once the first jobs expire, the data set stops growing.
    if SOAK_S >= 4 * RETENTION_S:
        assert redis_slope < 1.0, f"redis memory grows {redis_slope:.2f} MiB/min"
        peak_early = max(samples.keys[: half + 1])
        assert samples.keys[-1] <= peak_early * 1.5, "keys keep growing past the retention"

"""Scheduled-notification benchmarks: Redis memory per scheduled notification, and N
notifications all due at the same second (time to the first send, drain throughput).

Jobs have the shape POST /notifications gives a notification with a `sendAt`: the
data carries `sendAt`, and BullMQ's `delay` parks the job in the delayed set. One
errand worker process (fast engine, EMAIL_SEND_MS=0) drains them once they are due.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue
from drain import errand_jobs, used_memory, wait_ready
from harness import PY, cpu_seconds, errand_env, scratch_dir, spawn, stop

from errand.clock import iso_ms, now_ms

FILL_CHUNK = 1000
DUE_TIMEOUT_S = 180.0


@dataclass
class DueResult:
    jobs: int
    bytes_per_scheduled: float = 0.0
    job_hash_bytes: int = 0
    fill_s: float = 0.0
    ready_ms: float = 0.0  # the worker was ready this long after the due second (< 0: before)
    first_send_ms: float = 0.0  # after the due second
    seconds: float = 0.0  # due second -> last job finished
    completed: int = 0
    worker_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def scheduled_jobs(n: int, prefix: str, due_ms: int) -> list[dict[str, Any]]:
    jobs = errand_jobs(n, prefix)
    for job in jobs:
        job["data"] |= {"clientId": "anonymous", "sendAt": iso_ms(due_ms)}
    return jobs


async def fill_due(client: Any, prefix: str, jobs: list[dict[str, Any]], due_ms: int) -> None:
    queue = Queue("notifications", {"connection": client, "prefix": prefix})
    for start in range(0, len(jobs), FILL_CHUNK):
        delay = due_ms - now_ms()
        chunk = [
            {**j, "opts": {**j["opts"], "delay": delay}} for j in jobs[start : start + FILL_CHUNK]
        ]
        await queue.addBulk(chunk)


async def wait_drained(client: Any, prefix: str, n: int) -> int:
    completed_key = f"{prefix}:notifications:completed"
    deadline = time.monotonic() + DUE_TIMEOUT_S
    done = 0
    while time.monotonic() < deadline and done < n:
        await asyncio.sleep(0.1)
        done = int(await client.zcard(completed_key))
    return done


async def due_at_once(redis_url: str, n: int, lead_s: float) -> DueResult:
    """Fill n notifications due `lead_s` from now (memory measured), start a worker,
    and time the drain from the due second."""
    prefix = "{s" + uuid.uuid4().hex[:8] + "}"
    result = DueResult(n)
    due_ms = now_ms() + int(lead_s * 1000)
    jobs = scheduled_jobs(n, prefix, due_ms)
    client = aioredis.from_url(redis_url, decode_responses=True)
    env = errand_env(redis_url, prefix, ERRAND_EMAIL_SEND_MS="0")
    log = scratch_dir("scheduled") / "worker.log"
    proc = None
    try:
        before, started = await used_memory(client), time.monotonic()
        await fill_due(client, prefix, jobs, due_ms)
        result.fill_s = time.monotonic() - started
        result.bytes_per_scheduled = (await used_memory(client) - before) / n
        sample = f"{prefix}:notifications:{jobs[n // 2]['opts']['jobId']}"
        result.job_hash_bytes = int(await client.memory_usage(sample) or 0)
        proc = spawn([PY, "-m", "errand", "worker", "--queues", "notifications"], env, log)
        await wait_ready(redis_url, prefix, log, proc, "errand")
        result.ready_ms = now_ms() - due_ms
        cpu0 = cpu_seconds(proc.pid)
        result.completed = await wait_drained(client, prefix, n)
        result.worker_cpu_s = cpu_seconds(proc.pid) - cpu0
        key = f"{prefix}:notifications:completed"
        first = await client.zrange(key, 0, 0, withscores=True)
        last = await client.zrange(key, -1, -1, withscores=True)
        if first and last:
            result.first_send_ms = float(first[0][1]) - due_ms
            result.seconds = (float(last[0][1]) - due_ms) / 1000
    finally:
        stop(proc)
        await client.aclose()
    return result


def scheduled_run(redis_url: str, due_jobs: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The bench section: run `due_at_once`, say its figures, return them for the report."""
    lead_s = max(15.0, due_jobs / 5000)  # the fill and the worker's start fit before
    result = asyncio.run(due_at_once(redis_url, due_jobs, lead_s))
    say(
        f"scheduled: {result.bytes_per_scheduled:,.0f} B per scheduled notification; "
        f"{result.completed:,}/{result.jobs:,} due at once sent, first "
        f"{result.first_send_ms:,.0f} ms after the due second, {result.rate:,.0f} jobs/s "
        f"(fill {result.fill_s:.1f} s, worker ready {result.ready_ms:,.0f} ms after due)"
    )
    return asdict(result) | {"rate": result.rate}


def scheduled_lines(s: dict[str, Any], drains: list[dict[str, Any]]) -> list[str]:
    fast = next((d["rate"] for d in drains if "fast" in d["name"]), 0)
    versus = f" ({s['rate'] / fast:.2f}x the normal drain)" if fast else ""
    return [
        f"scheduled: {s['bytes_per_scheduled']:,.0f} B of Redis per scheduled notification "
        f"(job hash {s['job_hash_bytes']} B)",
        f"  {s['completed']:,} of {s['jobs']:,} due at the same second: first sent "
        f"{s['first_send_ms']:,.0f} ms after it, all in {s['seconds']:.1f} s, "
        f"{s['rate']:,.0f} jobs/s{versus}",
        "",
    ]

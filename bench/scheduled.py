"""Scheduled-notification benchmarks: Redis memory per scheduled notification, and N
notifications all due at the same second (time to the first send, drain throughput).

Jobs have the shape POST /notifications gives a notification with a `sendAt`: the
data carries `sendAt`, BullMQ's `delay` parks the job in the delayed set, and each
goes to the partition of its user, as POST /notifications puts it (`--due-partitions 1`:
all in one partition). One errand worker process (fast engine, EMAIL_SEND_MS=0, the
default 16 partitions) drains them once they are due.
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
from drain import errand_jobs, partition_prefixes, used_memory, wait_ready
from harness import PY, cpu_seconds, errand_env, scratch_dir, spawn, stop

from errand.clock import iso_ms, now_ms
from errand.jobids import partition_of
from errand.settings import Settings

FILL_CHUNK = 1000
DEFAULT_PARTITIONS = int(Settings.model_fields["partitions"].default)
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
    partitions: int = 1
    worker_cpu_s: float = 0.0
    valkey_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def scheduled_jobs(n: int, prefix: str, due_ms: int, partitions: int = 1) -> list[dict[str, Any]]:
    jobs = errand_jobs(n, prefix, partitions)
    for job in jobs:
        job["data"] |= {"clientId": "anonymous", "sendAt": iso_ms(due_ms)}
    return jobs


async def fill_due(
    client: Any, prefixes: list[str], jobs: list[dict[str, Any]], due_ms: int
) -> None:
    """Each job into the partition its id names, delayed until `due_ms`."""
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for job in jobs:
        by_partition.setdefault(partition_of(job["opts"]["jobId"]), []).append(job)
    for part, mine in sorted(by_partition.items()):
        queue = Queue("notifications", {"connection": client, "prefix": prefixes[part]})
        for start in range(0, len(mine), FILL_CHUNK):
            delay = due_ms - now_ms()
            chunk = [
                {**j, "opts": {**j["opts"], "delay": delay}}
                for j in mine[start : start + FILL_CHUNK]
            ]
            await queue.addBulk(chunk)


async def wait_drained(client: Any, prefixes: list[str], n: int) -> int:
    keys = [f"{prefix}:notifications:completed" for prefix in prefixes]
    deadline = time.monotonic() + DUE_TIMEOUT_S
    done = 0
    while time.monotonic() < deadline and done < n:
        await asyncio.sleep(0.1)
        done = sum([int(await client.zcard(key)) for key in keys])
    return done


async def finished_span(client: Any, prefixes: list[str]) -> tuple[float, float]:
    """The first and the last finishedOn (ms) over every partition's completed set."""
    firsts, lasts = [], []
    for prefix in prefixes:
        key = f"{prefix}:notifications:completed"
        firsts += [s for _, s in await client.zrange(key, 0, 0, withscores=True)]
        lasts += [s for _, s in await client.zrange(key, -1, -1, withscores=True)]
    return (min(firsts), max(lasts)) if firsts else (0.0, 0.0)


async def due_at_once(
    redis_url: str, valkey_pid: int, n: int, lead_s: float, partitions: int
) -> DueResult:
    """Fill n notifications due `lead_s` from now (memory measured), start a worker,
    and time the drain from the due second."""
    prefix = "{s" + uuid.uuid4().hex[:8] + "}"
    result = DueResult(n, partitions=partitions)
    due_ms = now_ms() + int(lead_s * 1000)
    prefixes = partition_prefixes(prefix, DEFAULT_PARTITIONS)
    jobs = scheduled_jobs(n, prefix, due_ms, partitions)
    client = aioredis.from_url(redis_url, decode_responses=True)
    env = errand_env(redis_url, prefix, ERRAND_EMAIL_SEND_MS="0")
    log = scratch_dir("scheduled") / "worker.log"
    proc = None
    try:
        before, started = await used_memory(client), time.monotonic()
        await fill_due(client, prefixes, jobs, due_ms)
        result.fill_s = time.monotonic() - started
        result.bytes_per_scheduled = (await used_memory(client) - before) / n
        sample = jobs[n // 2]["opts"]["jobId"]
        sample_key = f"{prefixes[partition_of(sample)]}:notifications:{sample}"
        result.job_hash_bytes = int(await client.memory_usage(sample_key) or 0)
        proc = spawn([PY, "-m", "errand", "worker", "--queues", "notifications"], env, log)
        await wait_ready(redis_url, prefix, log, proc, "errand")
        result.ready_ms = now_ms() - due_ms
        cpu0, vcpu0 = cpu_seconds(proc.pid), cpu_seconds(valkey_pid)
        result.completed = await wait_drained(client, prefixes, n)
        result.worker_cpu_s = cpu_seconds(proc.pid) - cpu0
        result.valkey_cpu_s = cpu_seconds(valkey_pid) - vcpu0
        first, last = await finished_span(client, prefixes)
        if first and last:
            result.first_send_ms = first - due_ms
            result.seconds = (last - due_ms) / 1000
    finally:
        stop(proc)
        await client.aclose()
    return result


def scheduled_run(
    redis_url: str, valkey_pid: int, due_jobs: int, partitions: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """The bench section: run `due_at_once`, say its figures, return them for the report."""
    lead_s = max(15.0, due_jobs / 1500)  # the fill and the worker's start fit before
    # (a worker ready after the due second measures its own start, not the burst: said)
    result = asyncio.run(due_at_once(redis_url, valkey_pid, due_jobs, lead_s, partitions))
    per_job = {k: v / max(result.completed, 1) * 1e6 for k, v in cpu_of(result).items()}
    say(
        f"scheduled: {result.bytes_per_scheduled:,.0f} B per scheduled notification; "
        f"{result.completed:,}/{result.jobs:,} due at once ({partitions} partitions) sent, "
        f"first {result.first_send_ms:,.0f} ms after the due second, {result.rate:,.0f} "
        f"jobs/s ({per_job['worker']:.0f} µs worker + {per_job['valkey']:.0f} µs Valkey CPU "
        f"a job; fill {result.fill_s:.1f} s, worker ready {result.ready_ms:,.0f} ms after due)"
        + (" NOT VALID: the worker was ready after the due second" if result.ready_ms > 0 else "")
    )
    return (
        asdict(result) | {"rate": result.rate} | {f"{k}_us_per_job": v for k, v in per_job.items()}
    )


def cpu_of(result: DueResult) -> dict[str, float]:
    return {"worker": result.worker_cpu_s, "valkey": result.valkey_cpu_s}


def scheduled_lines(s: dict[str, Any], drains: list[dict[str, Any]]) -> list[str]:
    fasts = [d for d in drains if "fast" in d["name"]]  # the drain over as many partitions
    same = [d for d in fasts if f" {s.get('partitions', 1)} partition" in d["name"]]
    fast = (same or fasts or [{"rate": 0}])[0]["rate"]
    versus = f" ({s['rate'] / fast:.2f}x the normal drain)" if fast else ""
    return [
        f"scheduled: {s['bytes_per_scheduled']:,.0f} B of Redis per scheduled notification "
        f"(job hash {s['job_hash_bytes']} B)",
        f"  {s['completed']:,} of {s['jobs']:,} due at the same second "
        f"({s.get('partitions', 1)} partitions): first sent "
        f"{s['first_send_ms']:,.0f} ms after it, all in {s['seconds']:.1f} s, "
        f"{s['rate']:,.0f} jobs/s{versus}",
        f"  CPU a job: worker {s.get('worker_us_per_job', 0):.0f} µs, "
        f"Valkey {s.get('valkey_us_per_job', 0):.0f} µs",
        "",
    ]

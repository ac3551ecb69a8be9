"""Drain benchmarks: N notification jobs, prefilled into a paused queue, then released at once.

The same jobs (errand's own job shape: priority, attempts, backoff, retention)
go to every contender on one Valkey under its own key prefix; the clock starts
when the queue is resumed and stops at the last job's `finishedOn` (the score of
the completed set, written by the worker). Worker and Valkey CPU are read from
/proc around the drain, Redis memory from INFO around the fill and the drain.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue
from harness import PY, ROOT, cpu_seconds, errand_env, rss_mib, scratch_dir, spawn, stop

from errand.jobids import QueueName, new_job_id, partition_for, partition_of
from errand.keys import ANONYMOUS_CLIENT, Keys
from errand.queue.policies import NOTIFICATION_PRIORITIES, retry_policies
from errand.settings import Settings

FILL_CHUNK = 500
DRAIN_TIMEOUT_S = 90.0


@dataclass
class DrainResult:
    name: str
    jobs: int
    seconds: float = 0.0
    completed: int = 0
    failed: int = 0
    worker_cpu_s: float = 0.0
    valkey_cpu_s: float = 0.0
    worker_rss_mib: float = 0.0
    worker_peak_mib: float = 0.0
    bytes_per_waiting: float = 0.0
    bytes_per_completed: float = 0.0
    job_hash_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def worker_us_per_job(self) -> float:
        return self.worker_cpu_s / self.completed * 1e6 if self.completed else 0.0

    @property
    def valkey_us_per_job(self) -> float:
        return self.valkey_cpu_s / self.completed * 1e6 if self.completed else 0.0


def errand_jobs(n: int, prefix: str, partitions: int = 1) -> list[dict[str, Any]]:
    """Welcome notifications exactly as POST /notifications enqueues them (each in the
    partition of its user, when there are several)."""
    policy = retry_policies(Settings(redis_url="redis://unused", queue_prefix=prefix))
    opts = policy[QueueName.NOTIFICATIONS].job_options()
    opts["priority"] = NOTIFICATION_PRIORITIES["welcome"]
    jobs = []
    for i in range(n):
        part = partition_for(ANONYMOUS_CLIENT, f"bench-{i}", partitions)
        job_id = new_job_id(QueueName.NOTIFICATIONS, part)
        jobs.append(
            {
                "name": "welcome",
                "data": {"type": "welcome", "userId": f"bench-{i}", "clientId": ANONYMOUS_CLIENT},
                "opts": {**opts, "jobId": job_id},
            }
        )
    return jobs


def partition_prefixes(prefix: str, partitions: int) -> list[str]:
    return [Keys(prefix, partitions).partition_prefix(p) for p in range(partitions)]


def reference_jobs(n: int) -> list[dict[str, Any]]:
    """The same notifications in the Node reference's job shape (see its POST /notifications)."""
    opts = {
        "priority": 5,
        "attempts": 4,
        "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": {"age": 86400},
        "removeOnFail": False,
    }
    return [
        {
            "name": "welcome",
            "data": {"type": "welcome", "userId": f"bench-{i}"},
            "opts": {**opts, "jobId": str(uuid.uuid4())},
        }
        for i in range(n)
    ]


async def used_memory(client: Any) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def fill(
    redis_url: str, prefixes: list[str], jobs: list[dict[str, Any]]
) -> tuple[int, int, int]:
    """Pause the queue (every partition) and add `jobs`, each to the partition its id
    names. Returns (used_memory before, after, one job hash's size)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    queues = [Queue("notifications", {"connection": client, "prefix": p}) for p in prefixes]
    try:
        for queue in queues:
            await queue.pause()
        before = await used_memory(client)
        for part, queue in enumerate(queues):
            mine = [j for j in jobs if partition_of(j["opts"]["jobId"]) == part]
            for start in range(0, len(mine), FILL_CHUNK):
                await queue.addBulk(mine[start : start + FILL_CHUNK])
        after = await used_memory(client)
        sample = jobs[len(jobs) // 2]["opts"]["jobId"]
        sample_key = f"{prefixes[partition_of(sample)]}:notifications:{sample}"
        job_bytes = await client.memory_usage(sample_key) or 0
        return before, after, int(job_bytes)
    finally:
        await client.aclose()


async def release_and_time(
    redis_url: str, prefixes: list[str], n: int
) -> tuple[float, int, int, int]:
    """Resume the queue (every partition); wait until n jobs finished: (seconds,
    completed, failed, memory)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    queues = [Queue("notifications", {"connection": client, "prefix": p}) for p in prefixes]
    completed_keys = [f"{p}:notifications:completed" for p in prefixes]
    failed_keys = [f"{p}:notifications:failed" for p in prefixes]
    try:
        start_ms = time.time() * 1000
        await asyncio.gather(*(queue.resume() for queue in queues))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        done = failed = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            done = sum([await client.zcard(key) for key in completed_keys])
            failed = sum([await client.zcard(key) for key in failed_keys])
            if done + failed >= n:
                break
        lasts = [await client.zrange(key, -1, -1, withscores=True) for key in completed_keys]
        end_ms = max((float(last[0][1]) for last in lasts if last), default=time.time() * 1000)
        memory = await used_memory(client)
        return max(end_ms - start_ms, 1.0) / 1000, int(done), int(failed), memory
    finally:
        await client.aclose()


async def wait_ready(redis_url: str, prefix: str, log: Path, proc: Any, kind: str) -> None:
    """Until the worker announces itself (errand: heartbeat; others: a line in their log)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} worker exited: {log.read_text()[-2000:]}")
            if kind == "errand":
                if await client.hlen(Keys(prefix).workers()):
                    break
            elif "ready" in log.read_text() or "workers running" in log.read_text():
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"{kind} worker not ready after 30 s: {log.read_text()[-2000:]}")
    finally:
        await client.aclose()
    await asyncio.sleep(0.5)  # let every queue's worker reach its blocking wait


def worker_command(
    kind: str,
    redis_url: str,
    prefix: str,
    concurrency: int,
    reference_dir: Path | None,
    extra_env: dict[str, str],
) -> tuple[list[str], dict[str, str], Path | None]:
    env = errand_env(redis_url, prefix, ERRAND_EMAIL_SEND_MS="0", **extra_env)
    if kind == "errand":
        return [PY, "-m", "errand", "worker"], env, None
    if kind == "bare":
        return (
            [PY, str(ROOT / "bench" / "bare_worker.py"), redis_url, prefix, str(concurrency)],
            env,
            None,
        )
    assert reference_dir is not None
    env.update({"REDIS_URL": redis_url, "ERRAND_WORKER_CONCURRENCY": str(concurrency)})
    return ["node", "server.js", "worker"], env, reference_dir


async def drain(
    kind: str,
    name: str,
    redis_url: str,
    valkey_pid: int,
    n: int,
    concurrency: int,
    reference_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> DrainResult:
    """Fill, start one worker process, release, time, stop. `kind` is errand, bare or reference."""
    prefix = "bull" if kind == "reference" else "{b" + uuid.uuid4().hex[:8] + "}"
    partitions = int((extra_env or {}).get("ERRAND_PARTITIONS", "1"))
    prefixes = partition_prefixes(prefix, partitions)
    jobs = reference_jobs(n) if kind == "reference" else errand_jobs(n, prefix, partitions)
    result = DrainResult(name, n)
    before, filled, result.job_hash_bytes = await fill(redis_url, prefixes, jobs)
    result.bytes_per_waiting = (filled - before) / n
    argv, env, cwd = worker_command(
        kind, redis_url, prefix, concurrency, reference_dir, extra_env or {}
    )
    log = scratch_dir("drain") / f"{kind}.log"
    proc = spawn(argv, env, log, cwd)
    try:
        await wait_ready(redis_url, prefix, log, proc, kind)
        cpu0, vcpu0 = cpu_seconds(proc.pid), cpu_seconds(valkey_pid)
        result.seconds, result.completed, result.failed, drained = await release_and_time(
            redis_url, prefixes, n
        )
        result.worker_cpu_s = cpu_seconds(proc.pid) - cpu0
        result.valkey_cpu_s = cpu_seconds(valkey_pid) - vcpu0
        result.worker_rss_mib, result.worker_peak_mib = rss_mib(proc.pid)
        result.bytes_per_completed = (drained - before) / n
    finally:
        stop(proc)
    if result.completed + result.failed < n:
        result.notes.append(f"only {result.completed + result.failed}/{n} finished in time")
    return result

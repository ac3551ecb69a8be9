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

from errand.keys import Keys, QueueName, new_job_id
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


def errand_jobs(n: int, prefix: str) -> list[dict[str, Any]]:
    """Welcome notifications exactly as POST /notifications enqueues them."""
    policy = retry_policies(Settings(redis_url="redis://unused", queue_prefix=prefix))
    opts = policy[QueueName.NOTIFICATIONS].job_options()
    opts["priority"] = NOTIFICATION_PRIORITIES["welcome"]
    return [
        {
            "name": "welcome",
            "data": {"type": "welcome", "userId": f"bench-{i}"},
            "opts": {**opts, "jobId": new_job_id(QueueName.NOTIFICATIONS)},
        }
        for i in range(n)
    ]


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


async def fill(redis_url: str, prefix: str, jobs: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Pause the queue and add `jobs`. Returns (used_memory before, after, one job hash's size)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    queue = Queue("notifications", {"connection": client, "prefix": prefix})
    try:
        await queue.pause()
        before = await used_memory(client)
        for start in range(0, len(jobs), FILL_CHUNK):
            await queue.addBulk(jobs[start : start + FILL_CHUNK])
        after = await used_memory(client)
        sample = jobs[len(jobs) // 2]["opts"]["jobId"]
        job_bytes = await client.memory_usage(f"{prefix}:notifications:{sample}") or 0
        return before, after, int(job_bytes)
    finally:
        await client.aclose()


async def release_and_time(redis_url: str, prefix: str, n: int) -> tuple[float, int, int, int]:
    """Resume the queue; wait until n jobs finished: (seconds, completed, failed, memory)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    queue = Queue("notifications", {"connection": client, "prefix": prefix})
    completed_key = f"{prefix}:notifications:completed"
    failed_key = f"{prefix}:notifications:failed"
    try:
        start_ms = time.time() * 1000
        await queue.resume()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        done = failed = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            done = await client.zcard(completed_key)
            failed = await client.zcard(failed_key)
            if done + failed >= n:
                break
        last = await client.zrange(completed_key, -1, -1, withscores=True)
        end_ms = float(last[0][1]) if last else time.time() * 1000
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
    jobs = reference_jobs(n) if kind == "reference" else errand_jobs(n, prefix)
    result = DrainResult(name, n)
    before, filled, result.job_hash_bytes = await fill(redis_url, prefix, jobs)
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
            redis_url, prefix, n
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

"""The `cluster` section: drain throughput on one Valkey and on clusters of 1, 2 and 3
masters, per Redis core used.

Each contender gets a fresh store. `--cluster-jobs` welcome notifications (users
varied, so they spread over the partitions) are added through errand's own add path
(`JobQueues.add_many`, the partition each id names) with no worker running; then
`--cluster-workers` `errand worker --queues notifications` processes start and drain
them. The rate is counted between the first and the last job's `finishedOn` (the
completed sets' scores), so worker start-up is not in it. Redis CPU is each master's
/proc time over the drain: `jobs/s per Redis core` is the rate divided by the cores the
masters used, the figure docs/scaling.md builds its model on.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from harness import PY, ROOT, cpu_seconds, errand_env, scratch_dir, spawn, start_valkey, stop

sys.path.insert(0, str(ROOT / "tests"))

from errand.jobids import QueueName, new_job_id
from errand.keys import ANONYMOUS_CLIENT, Keys
from errand.queue.adding import JobSpec
from errand.queue.facade import JobQueues
from errand.queue.policies import NOTIFICATION_PRIORITIES
from errand.redisio.connection import connect
from errand.settings import Settings
from support.cluster import ValkeyCluster

FILL_CHUNK = 500
DRAIN_TIMEOUT_S = 300.0


@dataclass
class ClusterDrain:
    name: str
    masters: int
    partitions: int
    jobs: int
    completed: int = 0
    seconds: float = 0.0
    redis_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    per_master_cpu_s: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def redis_cores(self) -> float:
        return self.redis_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def rate_per_redis_core(self) -> float:
        return self.rate / self.redis_cores if self.redis_cores else 0.0

    @property
    def redis_us_per_job(self) -> float:
        return self.redis_cpu_s / self.completed * 1e6 if self.completed else 0.0

    @property
    def worker_us_per_job(self) -> float:
        return self.worker_cpu_s / self.completed * 1e6 if self.completed else 0.0


async def fill(settings: Settings, jobs: int) -> None:
    redis = connect(settings)
    queues = JobQueues(settings, redis)
    try:
        for start in range(0, jobs, FILL_CHUNK):
            specs = []
            for n in range(start, min(start + FILL_CHUNK, jobs)):
                user = f"bench-{n}"
                part = queues.partition_for(ANONYMOUS_CLIENT, user)
                job_id = new_job_id(QueueName.NOTIFICATIONS, part)
                opts = queues.job_options(
                    QueueName.NOTIFICATIONS,
                    job_id,
                    priority=NOTIFICATION_PRIORITIES["welcome"],
                )
                data = {"type": "welcome", "userId": user, "clientId": ANONYMOUS_CLIENT}
                specs.append(JobSpec("welcome", data, opts))
            await queues.add_many(QueueName.NOTIFICATIONS, specs)
    finally:
        await redis.aclose()


async def finished_span(settings: Settings, jobs: int) -> tuple[int, float]:
    """(completed, seconds between the first and last finishedOn), once all `jobs` finished."""
    redis = connect(settings)
    keys = [
        Keys(settings.queue_prefix, settings.partitions).queue(
            QueueName.NOTIFICATIONS, "completed", p
        )
        for p in range(settings.partitions)
    ]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    try:
        while True:
            done = sum([await redis.zcard(k) for k in keys])
            if done >= jobs or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        firsts = [await redis.zrange(k, 0, 0, withscores=True) for k in keys]
        lasts = [await redis.zrange(k, -1, -1, withscores=True) for k in keys]
    finally:
        await redis.aclose()
    first = min(r[0][1] for r in firsts if r)
    last = max(r[0][1] for r in lasts if r)
    return done, max(last - first, 1.0) / 1000


def drain_once(name: str, url: str, pids: list[int], partitions: int, args: Any) -> ClusterDrain:
    prefix = "{c" + uuid.uuid4().hex[:8] + "}"
    settings = Settings(redis_url=url, queue_prefix=prefix, partitions=partitions)
    result = ClusterDrain(name, len(pids), partitions, args.cluster_jobs)
    asyncio.run(fill(settings, args.cluster_jobs))
    env = errand_env(
        url,
        prefix,
        ERRAND_EMAIL_SEND_MS="0",
        ERRAND_PARTITIONS=str(partitions),
        ERRAND_NOTIFY_CONCURRENCY=str(args.concurrency),
        ERRAND_WORKER_ENGINE=args.cluster_engine,
    )
    cpu0 = [cpu_seconds(pid) for pid in pids]
    workers = [
        spawn([PY, "-m", "errand", "worker", "--queues", "notifications"], env, log)
        for log in (
            scratch_dir("cluster-worker") / f"w{n}.log" for n in range(args.cluster_workers)
        )
    ]
    try:
        result.completed, result.seconds = asyncio.run(finished_span(settings, args.cluster_jobs))
        result.worker_cpu_s = sum(cpu_seconds(w.pid) for w in workers)
        spent = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
    finally:
        for worker in workers:
            stop(worker)
    # The masters' CPU from the workers' start to the last job: start-up polling included.
    result.per_master_cpu_s = tuple(spent)
    result.redis_cpu_s = sum(spent)
    return result


def cluster_section(args: Any, say: Any) -> list[ClusterDrain]:
    results: list[ClusterDrain] = []
    for partitions in (1, 16):
        server = start_valkey(f"single-{partitions}")
        assert server.process is not None
        name = f"one Valkey, {partitions} partition{'s' if partitions > 1 else ''}"
        name += f" ({args.cluster_engine})"
        results.append(drain_once(name, server.url, [server.process.pid], partitions, args))
        say(_line(results[-1]))
        server.stop()
    for masters in (1, 2, 3):
        cluster = ValkeyCluster(scratch_dir(f"cluster-{masters}"), masters=masters)
        try:
            cluster.start()
            pids = [pid for _, pid in cluster.pids()]
            name = f"cluster, {masters} master{'s' if masters > 1 else ''} ({args.cluster_engine})"
            results.append(drain_once(name, cluster.url, pids, 16, args))
            say(_line(results[-1]))
        finally:
            cluster.stop()
    return results


def _line(r: ClusterDrain) -> str:
    return (
        f"{r.name:38}{r.rate:>9,.0f} jobs/s  Redis {r.redis_cores:4.2f} cores "
        f"({r.redis_us_per_job:5.0f} µs/job)  {r.rate_per_redis_core:>9,.0f} jobs/s per "
        f"Redis core  worker {r.worker_us_per_job:5.0f} µs/job  {r.completed}/{r.jobs} done"
    )


def cluster_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = ["drain by store (jobs/s; Redis cores used; per Redis core; CPU per job)"]
    for row in results:
        lines.append("  " + _line(ClusterDrain(**row)))
    return [*lines, ""]

"""JobQueues: the typed facade over BullMQ queues that the API and services use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from bullmq import Queue
from redis.asyncio.cluster import RedisCluster

from errand import tracing
from errand.errors import NotFound
from errand.jobids import QueueName, partition_for, partition_of, queue_of
from errand.keys import Keys
from errand.queue.addargs import AddArgs
from errand.queue.adding import AddCall, JobSpec, JobWriter
from errand.queue.cancel import CancelOutcome, JobCanceller
from errand.queue.jobhash import pairs
from errand.queue.jobindex import LISTED_QUEUES
from errand.queue.policies import RetryPolicy, retry_policies
from errand.queue.snapshot import JobSnapshot, snapshot_from
from errand.redisio.replication import ReplicaBarrier
from errand.redisio.slotclient import SlotRedis, slot_client
from errand.settings import Durability, Settings

INDEX_LEAD_MS = 10_000
COUNT_STATES = ("waiting", "prioritized", "active", "delayed", "completed", "failed", "paused")

# Everything a status answer needs, read atomically: what a MULTI of these eight
# commands returns, as one command (the client packs and parses one instead of ten).
# KEYS: job hash, completed, failed, delayed, active, webhook state, wait, prioritized,
# cancel flag.
_SNAPSHOT = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
local id = ARGV[1]
return {fields, redis.call('ZSCORE', KEYS[2], id), redis.call('ZSCORE', KEYS[3], id),
        redis.call('ZSCORE', KEYS[4], id), redis.call('LPOS', KEYS[5], id),
        redis.call('HGETALL', KEYS[6]), redis.call('LLEN', KEYS[7]),
        redis.call('ZCARD', KEYS[8]), redis.call('EXISTS', KEYS[9])}
"""


class JobQueues:
    """One BullMQ `Queue` per partition of each errand queue, sharing the process's Redis
    pool. Callers name a queue and a job id; the id names the partition."""

    def __init__(self, settings: Settings, redis: Any, slot_reads: bool = False) -> None:
        """`slot_reads` (the API's): on a cluster, job reads go over one pipelined
        connection per partition (see `_snapshot_script`); close them with `close()`."""
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.queue_prefix, settings.partitions)
        self.partitions = range(settings.partitions)
        self.policies: Mapping[QueueName, RetryPolicy] = retry_policies(settings)
        self._queues: dict[tuple[QueueName, int], Queue] = {}
        self._state_keys: dict[tuple[QueueName, int], tuple[str, ...]] = {}
        self._adders: dict[tuple[QueueName, int], AddArgs] = {}
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._slot_reads = slot_reads and isinstance(redis, RedisCluster)
        self._slot_snapshots: dict[int, Any] = {}
        self._slot_clients: list[SlotRedis] = []
        # The cancel flag outlives any record of the job it stops.
        flag_ttl_s = max(settings.keep_completed_seconds, settings.keep_failed_seconds) + 3600
        self._canceller = JobCanceller(redis, self.keys, flag_ttl_s)
        # A cluster: a client's keys and a job's partition live in different slots, so
        # what touches both cannot be one MULTI there.
        self.cluster = two_step = isinstance(redis, RedisCluster)
        barrier = (
            ReplicaBarrier(redis, settings.replica_wait_ms)
            if settings.durability is Durability.STRICT
            else None
        )
        self._writer = JobWriter(
            redis, self.keys, settings.keep_completed_seconds, two_step, barrier
        )
        # On a cluster an index entry is written just before its job (adding.py): a
        # reader keeps an entry without a job until it is this old.
        self.index_lead_ms = INDEX_LEAD_MS if two_step else 0

    def bullmq(self, queue: QueueName, partition: int = 0) -> Queue:
        """Partition `partition` of `queue` as a bullmq `Queue` (made on first use)."""
        found = self._queues.get((queue, partition))
        if found is None:
            opts = {"connection": self.redis, "prefix": self.keys.partition_prefix(partition)}
            found = self._queues[queue, partition] = Queue(str(queue), opts)
        return found

    def partition_for(self, client_id: str, user_id: str) -> int:
        """The partition of a client's report or notification for `user_id` (keys.py)."""
        return partition_for(client_id, user_id, len(self.partitions))

    async def add(
        self,
        queue: QueueName,
        name: str,
        data: dict[str, Any],
        job_id: str,
        *,
        priority: int = 0,
        dedup_id: str | None = None,
        delay_ms: int = 0,
    ) -> str:
        """Enqueue a job under its queue's policy; returns the id of the job that holds the work.

        With `dedup_id`, BullMQ keeps one job per id in flight: the id returned is the
        in-flight job's when there is one, so `!= job_id` means deduplicated. With
        `delay_ms`, the job waits in BullMQ's delayed set until it is due. With
        tracing on, the job's data carries the trace context (`errand.tracing`).
        """
        opts = self.job_options(
            queue, job_id, priority=priority, dedup_id=dedup_id, delay_ms=delay_ms
        )
        return (await self.add_many(queue, [JobSpec(name, data, opts)]))[0]

    def job_options(
        self,
        queue: QueueName,
        job_id: str,
        *,
        priority: int = 0,
        dedup_id: str | None = None,
        delay_ms: int = 0,
    ) -> dict[str, Any]:
        """BullMQ `opts` of a job: its queue's policy, id, priority, delay and dedup id."""
        opts: dict[str, Any] = self.policies[queue].job_options()
        opts["jobId"] = job_id
        if priority:
            opts["priority"] = priority
        if delay_ms > 0:
            opts["delay"] = delay_ms
        if dedup_id is not None:
            opts["deduplication"] = {"id": dedup_id}
        return opts

    async def add_many(self, queue: QueueName, specs: Sequence[JobSpec]) -> list[str]:
        """`add_each`, raising the first error that refused a job (see `add_each`)."""
        ids = await self.add_each(queue, specs)
        for outcome in ids:
            if isinstance(outcome, Exception):
                raise outcome
        return [str(outcome) for outcome in ids]

    async def add_each(self, queue: QueueName, specs: Sequence[JobSpec]) -> list[str | Exception]:
        """Add jobs (each in the partition its `jobId` names) and their listing-index
        entries: in one round trip of MULTIs on a single server, index then jobs on a
        cluster (adding.py).

        Every job errand creates passes here, so this is where it gets its producer span
        (with tracing on, the job's data carries that span's context).
        Returns, per spec, the id of the job that holds its work (see `add`), or the
        error that refused it (a MULTI of the batch refused whole, e.g. the store full).
        """
        calls: list[AddCall] = []
        with contextlib.ExitStack() as spans:
            for spec in specs:
                job_id = str(spec.opts["jobId"])
                partition = partition_of(job_id)
                bullmq_queue = self.bullmq(queue, partition)
                data = spec.data
                if tracing.enabled:
                    data = spans.enter_context(tracing.enqueue_span(str(queue), job_id, data))
                job = JobSpec(spec.name, data, spec.opts)
                calls.append(
                    AddCall.of(bullmq_queue, self._add_args(queue, partition), job, job_id)
                )
            return await self._writer.add(queue, calls)

    def _add_args(self, queue: QueueName, partition: int) -> AddArgs:
        """The add-script call builder of one queue partition (made on first use)."""
        found = self._adders.get((queue, partition))
        if found is None:
            found = self._adders[queue, partition] = AddArgs(self.bullmq(queue, partition))
        return found

    async def snapshot(self, job_id: str, owner: str | None = None) -> JobSnapshot:
        """Hash and state of one job, read atomically in one round trip.

        With `owner`, a job of another client, or a webhook delivery (nobody's job: it
        is part of its source job's view), is answered exactly like an unknown one.
        Raises NotFound for an unknown, removed or foreign id.
        """
        queue = queue_of(job_id)
        if queue is None or (owner is not None and queue not in LISTED_QUEUES):
            raise NotFound(f"no job with id {job_id!r}")
        keys, states = self.keys, self._snapshot_keys(queue, partition_of(job_id))
        reply = await self._snapshot_script(partition_of(job_id))(
            keys=[
                keys.job(queue, job_id),
                *states[:4],
                keys.webhook_state(job_id),
                *states[4:],
                keys.cancel_request(job_id),
            ],
            args=[job_id],
        )
        if not reply:
            raise NotFound(f"no job with id {job_id!r}")
        fields, completed, failed, delayed, active_pos, webhook, waiting, prioritized, flag = reply
        snap = snapshot_from(
            job_id,
            queue,
            pairs(fields),
            (_score(completed), _score(failed), _score(delayed), active_pos),
            pairs(webhook),
            queue_depth=int(waiting) + int(prioritized),
            cancel_requested=bool(flag),
        )
        if owner is not None and snap.client_id != owner:
            raise NotFound(f"no job with id {job_id!r}")
        return snap

    def _snapshot_script(self, partition: int) -> Any:
        """The snapshot script, called through the process's client; with `slot_reads`
        through a pipelined connection to the master of the partition's slot: redis-py's
        cluster client takes a connection per command in flight, so 2,000 long-polls
        woken at once opened 2,000 connections; this way a partition's reads share one."""
        if not self._slot_reads:
            return self._snapshot
        script = self._slot_snapshots.get(partition)
        if script is None:
            client = slot_client(self.redis, self.keys.partition_prefix(partition))
            self._slot_clients.append(client)
            script = self._slot_snapshots[partition] = client.register_script(_SNAPSHOT)
        return script

    async def close(self) -> None:
        """Close the per-partition connections of `slot_reads` (the process's client is
        its owner's to close)."""
        clients, self._slot_clients = self._slot_clients, []
        self._slot_snapshots.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _snapshot_keys(self, queue: QueueName, partition: int) -> tuple[str, ...]:
        """The state keys the snapshot script reads, built once per queue partition."""
        found = self._state_keys.get((queue, partition))
        if found is None:
            names = ("completed", "failed", "delayed", "active", "wait", "prioritized")
            found = tuple(self.keys.queue(queue, name, partition) for name in names)
            self._state_keys[queue, partition] = found
        return found

    async def cancel(self, queue: QueueName, job_id: str) -> CancelOutcome:
        """Cancel a job that has not started, or ask an active report to stop (cancel.py)."""
        return await self._canceller.cancel(queue, job_id)

    async def counts(self, queue: QueueName) -> dict[str, int]:
        """Jobs per BullMQ state, summed over the queue's partitions."""
        return sum_counts(await self.partition_counts(queue))

    async def partition_counts(self, queue: QueueName) -> list[dict[str, int]]:
        """Jobs per BullMQ state of each partition of `queue` (index = partition)."""
        raws = await asyncio.gather(
            *(self.bullmq(queue, p).getJobCounts(*COUNT_STATES) for p in self.partitions)
        )
        return [{state: int(raw.get(state, 0)) for state in COUNT_STATES} for raw in raws]


def sum_counts(per_partition: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Jobs per state over several partitions."""
    total = dict.fromkeys(COUNT_STATES, 0)
    for counts in per_partition:
        for state, n in counts.items():
            total[state] += n
    return total


def _score(raw: str | None) -> float | None:
    return None if raw is None else float(raw)

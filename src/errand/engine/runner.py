"""The worker process: BullMQ workers for the chosen queues, heartbeats, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from bullmq import Job, UnrecoverableError, Worker
from bullmq.custom_errors import DelayedError

from errand import gc_tuning, tracing
from errand.clock import now_ms
from errand.engine.fastloop import FastWorker
from errand.engine.gate import SlotGate
from errand.engine.listeners import (
    error_listener,
    job_fields,
    lock_renewal_failed_listener,
    on_completed_listener,
    on_failed_listener,
)
from errand.engine.scheduled import ScheduledRuns
from errand.engine.traced import traced_attempt
from errand.errors import JobDeferred, PermanentFailure
from errand.jobids import QueueName
from errand.keys import Keys
from errand.logs import job_context
from errand.metrics.jobs import JobMetrics
from errand.metrics.server import WorkerMetricsServer
from errand.processors.job import Processor
from errand.processors.reports import ReportProcessor
from errand.queue.handback import HeldJob, hand_back
from errand.redisio.connection import bullmq_connection, connect, is_cluster, warm_up
from errand.redisio.pipelined import PipelinedRedis
from errand.redisio.slotclient import SlotRedis, slot_client
from errand.settings import Settings, WorkerEngine

log = logging.getLogger("errand.worker")


def build_processors(settings: Settings, redis: Any) -> dict[QueueName, Processor]:
    """One processor per queue. Imports are local so each queue's deps load only when run."""
    from errand.processors.notifications import NotificationProcessor
    from errand.processors.webhooks import WebhookEvents, WebhookProcessor

    # A job with a webhookUrl emits its final outcome as a webhook event.
    events = WebhookEvents(settings, redis)
    return {
        QueueName.REPORTS: events.wrap(QueueName.REPORTS, ReportProcessor(settings, redis)),
        QueueName.NOTIFICATIONS: events.wrap(
            QueueName.NOTIFICATIONS, NotificationProcessor(settings, redis)
        ),
        QueueName.WEBHOOKS: WebhookProcessor(settings, redis),
    }


def concurrency_for(settings: Settings, queue: QueueName) -> int:
    return {
        QueueName.REPORTS: settings.report_concurrency,
        QueueName.NOTIFICATIONS: settings.notify_concurrency,
        QueueName.WEBHOOKS: settings.webhook_concurrency,
    }[queue]


def uses_fast_engine(settings: Settings) -> bool:
    """ERRAND_WORKER_ENGINE=fast (the default), on a single server or a cluster."""
    return settings.worker_engine is WorkerEngine.FAST


def build_worker(
    settings: Settings,
    name: str,
    processor: Any,
    opts: dict[str, Any],
    client: Any,
    gate: SlotGate | None = None,
) -> Any:
    """The worker for one queue partition (`opts["prefix"]`): errand's FastWorker or
    bullmq's Worker, per the settings.

    `client` is the partition's Redis client (`WorkerProcess.partition_client`); the fast
    engine sends its scripts through it when it is a PipelinedRedis (see
    `connect(settings, pipelined=True)`, or a cluster's SlotRedis). `gate` shares
    the queue's concurrency among the fast workers of its partitions; bullmq's Worker
    runs `concurrency` jobs per partition.
    """
    if uses_fast_engine(settings) and isinstance(client, PipelinedRedis):
        return FastWorker(name, processor, opts, client, gate)
    return Worker(name, processor, opts)


class WorkerProcess:
    """Owns the BullMQ workers of one OS process and everything they need."""

    def __init__(
        self,
        settings: Settings,
        queues: Sequence[QueueName],
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.queue_names = list(queues)
        self.concurrency = concurrency
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.keys = Keys(settings.queue_prefix, settings.partitions)
        self.partitions = settings.worker_partition_list()
        self.redis: Any = None
        self._slot_clients: dict[int, SlotRedis] = {}  # a cluster's fast engine, per partition
        self._marker_client: Any = None  # a cluster's fast engine: its BZPOPMINs, shared
        self.workers: list[Worker] = []
        self._runs: list[asyncio.Future[Any]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _worker_options(self, queue: QueueName, partition: int) -> dict[str, Any]:
        s = self.settings
        return {
            "connection": self._marker_client or bullmq_connection(s),
            "prefix": self.keys.partition_prefix(partition),
            "concurrency": self._concurrency(queue),
            "lockDuration": s.lock_duration_ms,
            "stalledInterval": s.stalled_interval_ms,
            "maxStalledCount": s.max_stalled_count,
            "name": self.id,
        }

    def _concurrency(self, queue: QueueName) -> int:
        return self.concurrency or concurrency_for(self.settings, queue)

    async def start(self) -> None:
        self.redis = connect(self.settings, pipelined=uses_fast_engine(self.settings))
        await warm_up(self.redis)
        if uses_fast_engine(self.settings) and is_cluster(self.settings):
            # One cluster client for every fast worker's marker wait (BZPOPMIN): it follows
            # a marker's slot through a failover, and each of redis-py's cluster clients
            # reads the server's whole COMMAND table when it starts (one per partition and
            # queue delayed a worker's start by seconds on a busy box).
            self._marker_client = bullmq_connection(self.settings)
            await warm_up(self._marker_client)  # 48 first BZPOPMINs would race its discovery
        processors = build_processors(self.settings, self.redis)
        runs = ScheduledRuns(
            self.redis, self.keys, self.settings.keep_completed_seconds
        )  # a schedule's run passes its gate first
        for queue in self.queue_names:
            metrics = JobMetrics(queue)
            observed = runs.wrap(_observed(queue, processors[queue], metrics))
            gate = SlotGate(self._concurrency(queue)) if len(self.partitions) > 1 else None
            for partition in self.partitions:
                options = {**self._worker_options(queue, partition), "autorun": False}
                client = self.partition_client(partition)
                worker = build_worker(self.settings, str(queue), observed, options, client, gate)
                worker.on("completed", on_completed_listener(queue, metrics))
                worker.on("failed", on_failed_listener(queue, metrics))
                worker.on("error", error_listener(queue))
                worker.on("lockRenewalFailed", lock_renewal_failed_listener(queue, worker))
                await _detect_server_capabilities(worker)
                self._runs.append(asyncio.ensure_future(worker.run()))
                self.workers.append(worker)
        self._heartbeat_task = asyncio.create_task(self._heartbeat())
        log.info(
            "worker %s started on %s, partitions %s",
            self.id,
            ",".join(self.queue_names),
            _ranges(self.partitions),
        )

    def partition_client(self, partition: int) -> Any:
        """The client a partition's workers send their scripts through: the process's,
        or with the fast engine on a cluster one pipelined connection to the master of
        the partition's slot, shared by the partition's queues (their keys share it)."""
        if not (uses_fast_engine(self.settings) and is_cluster(self.settings)):
            return self.redis
        client = self._slot_clients.get(partition)
        if client is None:
            prefix = self.keys.partition_prefix(partition)
            client = self._slot_clients[partition] = slot_client(self.redis, prefix)
        return client

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> None:
        """Run until `request_stop` (SIGTERM/SIGINT), then stop gracefully."""
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Take no new jobs; let active ones finish within the grace period.

        After the grace the workers are force-closed and the jobs still running are
        handed straight back to `wait` (queue/handback.py), so another worker takes
        them now instead of after the lock expires and a stalled check finds them.
        """
        if self._heartbeat_task is not None:
            await _cancel_and_wait(self._heartbeat_task)
        grace = self.settings.shutdown_grace_seconds
        closing = [asyncio.ensure_future(w.close()) for w in self.workers]
        _, pending = await asyncio.wait(closing, timeout=grace) if closing else (set(), set())
        if pending:
            await self._force_close(pending)
        for run in self._runs:
            if not run.done():
                run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        self._runs.clear()
        for client in [*self._slot_clients.values(), self._marker_client]:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.hdel(self.keys.workers(), self.id)
            await self.redis.aclose()
        log.info("worker %s stopped", self.id)

    async def _force_close(self, pending: set[asyncio.Future[None]]) -> None:
        held = [
            HeldJob(QueueName(w.name), str(job.id), token, job.attemptsMade + 1)
            for w in self.workers
            for job, token in list(w.jobs)
        ]
        log.warning("grace period over: force-closing, handing back %d active job(s)", len(held))
        await asyncio.gather(*(w.close(force=True) for w in self.workers), return_exceptions=True)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for job in await hand_back(self.redis, self.keys, held):
            log.info(
                "job handed back to wait", extra=job_fields(job.job_id, job.queue, job.attempt)
            )

    async def _heartbeat(self) -> None:
        """Publish this process's liveness so `/admin/queues` can list live workers."""
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "queues": self.queue_names,
            "partitions": _ranges(self.partitions),
        }
        while True:
            try:
                record["lastSeen"] = now_ms()
                await self.redis.hset(self.keys.workers(), self.id, orjson.dumps(record))
            except Exception as err:  # keep beating through Redis outages
                log.warning("heartbeat failed: %s", err)
            await asyncio.sleep(self.settings.heartbeat_seconds)


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it ends, cancelling again if the request was lost.

    Python 3.11's `asyncio.wait_for` (used inside redis-py's connect) drops a
    cancellation that lands as the awaited call finishes; the heartbeat loop would
    then beat on forever and the worker would never stop.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def _detect_server_capabilities(worker: Worker) -> None:
    """Let BullMQ read the server version before it first blocks.

    bullmq-python only learns that the server accepts fractional BZPOPMIN timeouts
    from INFO; until then it rounds every wait up to whole seconds, which turns a
    200 ms retry backoff into 1 s.
    """
    for connection in (worker.redisConnection, worker.blockingRedisConnection):
        if connection is not None:
            try:
                await connection.getRedisVersion()
            except Exception as err:  # Redis down at start: BullMQ's defaults still work
                log.warning("could not read the Redis version: %s", err)


def _ranges(partitions: Sequence[int]) -> str:
    """`0-3,8` for [0, 1, 2, 3, 8] (the form ERRAND_WORKER_PARTITIONS takes)."""
    runs: list[list[int]] = []
    for p in partitions:
        if runs and runs[-1][1] == p - 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def _observed(queue: QueueName, processor: Processor, metrics: JobMetrics) -> Processor:
    """`processor` with metrics, the job's log context and (tracing on) a span around each
    attempt, and its outcomes in BullMQ's terms: PermanentFailure -> UnrecoverableError,
    JobDeferred -> DelayedError (processors never import bullmq)."""

    async def observed(job: Job, token: str) -> Any:
        context = job_context.set(job_fields(job.id, queue, job.attemptsMade + 1))
        first = job.attemptsMade == 0 and job.attemptsStarted <= 1
        started = metrics.started(job.timestamp + (job.delay or 0), first)
        try:
            if tracing.enabled:
                return await traced_attempt(queue, processor, job, token)
            return await processor(job, token)
        except PermanentFailure as err:
            raise UnrecoverableError(str(err)) from err
        except JobDeferred as err:
            raise DelayedError() from err
        finally:
            metrics.finished(started)
            job_context.reset(context)

    return observed


async def run_worker(
    settings: Settings, queues: Sequence[QueueName], concurrency: int | None = None
) -> None:
    """Entry point of `errand worker`: run until SIGTERM or SIGINT."""
    process = WorkerProcess(settings, queues, concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, process.request_stop)
    metrics_server = None
    if settings.worker_metrics_port is not None:
        metrics_server = WorkerMetricsServer(
            settings.worker_metrics_host, settings.worker_metrics_port
        )
        metrics_server.start()
    gc_tuning.tune_after_startup()
    try:
        await process.run_until_stopped()
    finally:
        if metrics_server is not None:
            metrics_server.stop()

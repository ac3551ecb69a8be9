"""The worker process: BullMQ workers for the chosen queues, heartbeats, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from bullmq import Job, Worker

from errand.clock import now_ms
from errand.keys import Keys, QueueName
from errand.queue.connection import connect, redis_url
from errand.settings import Settings
from errand.workers.reports import ReportProcessor

log = logging.getLogger("errand.worker")

Processor = Callable[[Job, str], Awaitable[Any]]


def build_processors(settings: Settings, redis: Any) -> dict[QueueName, Processor]:
    """One processor per queue. Imports are local so each queue's deps load only when run."""
    from errand.workers.notifications import NotificationProcessor
    from errand.workers.webhooks import WebhookProcessor

    return {
        QueueName.REPORTS: ReportProcessor(settings, redis),
        QueueName.NOTIFICATIONS: NotificationProcessor(settings, redis),
        QueueName.WEBHOOKS: WebhookProcessor(settings, redis),
    }


def concurrency_for(settings: Settings, queue: QueueName) -> int:
    return {
        QueueName.REPORTS: settings.report_concurrency,
        QueueName.NOTIFICATIONS: settings.notify_concurrency,
        QueueName.WEBHOOKS: settings.webhook_concurrency,
    }[queue]


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
        self.keys = Keys(settings.queue_prefix)
        self.redis: Any = None
        self.workers: list[Worker] = []
        self._runs: list[asyncio.Future[Any]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _worker_options(self, queue: QueueName) -> dict[str, Any]:
        s = self.settings
        return {
            "connection": redis_url(s),
            "prefix": s.queue_prefix,
            "concurrency": self.concurrency or concurrency_for(s, queue),
            "lockDuration": s.lock_duration_ms,
            "stalledInterval": s.stalled_interval_ms,
            "maxStalledCount": s.max_stalled_count,
            "name": self.id,
        }

    async def start(self) -> None:
        self.redis = connect(self.settings)
        processors = build_processors(self.settings, self.redis)
        for queue in self.queue_names:
            options = {**self._worker_options(queue), "autorun": False}
            worker = Worker(str(queue), processors[queue], options)
            worker.on("failed", _log_failure(queue))
            worker.on("error", _log_error(queue))
            await _detect_server_capabilities(worker)
            self._runs.append(asyncio.ensure_future(worker.run()))
            self.workers.append(worker)
        self._heartbeat_task = asyncio.create_task(self._heartbeat())
        log.info("worker %s started on %s", self.id, ",".join(self.queue_names))

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
        """Finish active jobs within the grace period; force-close the rest.

        A force-closed job keeps its lock until it expires; BullMQ's stalled-job
        check then hands it to another worker (at-least-once, so processors are
        idempotent).
        """
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        grace = self.settings.shutdown_grace_seconds
        closing = [asyncio.ensure_future(w.close()) for w in self.workers]
        done, pending = await asyncio.wait(closing, timeout=grace) if closing else (set(), set())
        if pending:
            log.warning("grace period over: force-closing %d worker(s)", len(pending))
            await asyncio.gather(*(w.close(force=True) for w in self.workers), return_exceptions=True)
            for task in pending:
                task.cancel()
        for run in self._runs:
            if not run.done():
                run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        self._runs.clear()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.hdel(self.keys.workers(), self.id)
            await self.redis.aclose()
        log.info("worker %s stopped", self.id)

    async def _heartbeat(self) -> None:
        """Publish this process's liveness so `/admin/queues` can list live workers."""
        record = {"pid": os.getpid(), "host": socket.gethostname(), "queues": self.queue_names}
        while True:
            try:
                record["lastSeen"] = now_ms()
                await self.redis.hset(self.keys.workers(), self.id, orjson.dumps(record))
            except Exception as err:  # keep beating through Redis outages
                log.warning("heartbeat failed: %s", err)
            await asyncio.sleep(self.settings.heartbeat_seconds)


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


def _log_failure(queue: QueueName) -> Callable[[Job, BaseException], None]:
    def on_failed(job: Job, err: BaseException) -> None:
        log.info(
            "job attempt failed: %s",
            err,
            extra={"jobId": job.id, "queue": str(queue), "attempt": job.attemptsMade},
        )

    return on_failed


def _log_error(queue: QueueName) -> Callable[..., None]:
    def on_error(err: BaseException, *args: Any) -> None:
        log.warning("worker error on %s: %s", queue, err)

    return on_error


async def run_worker(
    settings: Settings, queues: Sequence[QueueName], concurrency: int | None = None
) -> None:
    """Entry point of `errand worker`: run until SIGTERM or SIGINT."""
    process = WorkerProcess(settings, queues, concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, process.request_stop)
    await process.run_until_stopped()

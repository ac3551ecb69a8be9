"""Prometheus metrics: the process registry, cheap job recorders, queue gauges and HTTP middleware.

Every errand process records into `REGISTRY`. The API serves it on `GET /metrics`
together with `errand_jobs{queue,state}` (BullMQ's counts, read at most once a
second); `errand worker` serves it on its own port when ERRAND_WORKER_METRICS_PORT
is set. Label values are bounded: queues, states, transports, outcomes and route
templates, never ids or raw paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from errand import __version__
from errand.keys import QueueName, queue_of
from errand.settings import EmailTransport

log = logging.getLogger("errand.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
COUNTS_TTL_S = 1.0
JOB_STATES = ("waiting", "active", "delayed", "completed", "failed")
WEBHOOK_OUTCOMES = ("delivered", "failed", "dead_lettered", "skipped")
UNMATCHED_ROUTE = "unmatched"

_PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)

# `_created` series double the output and no dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Gauge("errand_build_info", "errand's version (always 1).", ["version"],
                   registry=REGISTRY)
JOBS_COMPLETED = Counter("errand_jobs_completed", "Jobs that completed.", ["queue"],
                         registry=REGISTRY)
JOB_ATTEMPTS_FAILED = Counter("errand_job_attempts_failed",
                              "Job attempts that failed (retried or dead-lettered).", ["queue"],
                              registry=REGISTRY)
JOBS_DEAD_LETTERED = Counter("errand_jobs_dead_lettered",
                             "Jobs that ran out of attempts and went to the DLQ.", ["queue"],
                             registry=REGISTRY)
JOBS_RETRIED = Counter("errand_jobs_retried",
                       "Jobs sent round again: trigger=backoff after a failed attempt, "
                       "trigger=dlq by POST /admin/dlq/{id}/retry.", ["queue", "trigger"],
                       registry=REGISTRY)
JOB_PROCESSING = Histogram("errand_job_processing_seconds",
                           "Time one attempt of a job ran in a worker.", ["queue"],
                           buckets=_PROCESSING_BUCKETS, registry=REGISTRY)
JOB_WAIT = Histogram("errand_job_wait_seconds",
                     "Time from enqueue to the start of a job's first attempt.", ["queue"],
                     buckets=_WAIT_BUCKETS, registry=REGISTRY)
JOBS_IN_PROGRESS = Gauge("errand_jobs_in_progress", "Jobs this process is running now.",
                         ["queue"], registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("errand_webhook_deliveries",
                             "Webhook delivery attempts by outcome.", ["outcome"],
                             registry=REGISTRY)
EMAILS_SENT = Counter("errand_emails_sent", "Emails sent, by transport.", ["transport"],
                      registry=REGISTRY)
HTTP_REQUESTS = Counter("errand_http_requests", "HTTP requests by route template and status.",
                        ["method", "route", "status"], registry=REGISTRY)
HTTP_IN_FLIGHT = Gauge("errand_http_requests_in_flight",
                       "HTTP requests being answered now (a scrape counts itself).",
                       registry=REGISTRY)
HTTP_DURATION = Histogram("errand_http_request_duration_seconds",
                          "Time to answer an HTTP request (SSE: the whole stream).",
                          ["method", "route"], buckets=_HTTP_BUCKETS, registry=REGISTRY)

BUILD_INFO.labels(__version__).set(1)
for _queue in QueueName:
    for _family in (JOBS_COMPLETED, JOB_ATTEMPTS_FAILED, JOBS_DEAD_LETTERED, JOB_PROCESSING,
                    JOB_WAIT, JOBS_IN_PROGRESS):
        _family.labels(str(_queue))
    for _trigger in ("backoff", "dlq"):
        JOBS_RETRIED.labels(str(_queue), _trigger)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)
for _transport in EmailTransport:
    EMAILS_SENT.labels(str(_transport))


def record_webhook_delivery(outcome: str) -> None:
    """Count one webhook delivery attempt: `delivered`, `failed` (will retry),
    `dead_lettered` (retries ran out) or `skipped` (nothing was sent).

    The worker runner already calls this for every job of the `webhooks` queue, from
    the job's outcome; a webhook processor does not need to call it again.
    """
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def record_email_sent(transport: str) -> None:
    """Count one email handed to a transport (called by the runner on a sent notification)."""
    EMAILS_SENT.labels(transport).inc()


def record_dlq_retry(job_id: str) -> None:
    """Count one dead-lettered job sent round again by an admin."""
    queue = queue_of(job_id)
    if queue is not None:
        JOBS_RETRIED.labels(str(queue), "dlq").inc()


class JobMetrics:
    """One queue's metric children, bound once, so recording a job is a few increments."""

    __slots__ = ("_attempts_failed", "_completed", "_dead_lettered", "_in_progress",
                 "_processing", "_retried", "_wait", "queue")

    def __init__(self, queue: QueueName) -> None:
        label = str(queue)
        self.queue = queue
        self._completed = JOBS_COMPLETED.labels(label)
        self._attempts_failed = JOB_ATTEMPTS_FAILED.labels(label)
        self._dead_lettered = JOBS_DEAD_LETTERED.labels(label)
        self._retried = JOBS_RETRIED.labels(label, "backoff")
        self._processing = JOB_PROCESSING.labels(label)
        self._wait = JOB_WAIT.labels(label)
        self._in_progress = JOBS_IN_PROGRESS.labels(label)

    def started(self, enqueued_ms: int, first_attempt: bool) -> float:
        """A job attempt begins; returns the start mark to pass to `finished`."""
        self._in_progress.inc()
        if first_attempt and enqueued_ms:
            self._wait.observe(max(0.0, time.time() - enqueued_ms / 1000))
        return time.perf_counter()

    def finished(self, started: float) -> None:
        self._in_progress.dec()
        self._processing.observe(time.perf_counter() - started)

    def completed(self, result: Any) -> None:
        self._completed.inc()
        if not isinstance(result, dict):
            result = {}
        if self.queue is QueueName.NOTIFICATIONS and result.get("sent"):
            record_email_sent(str(result.get("transport") or "unknown"))
        elif self.queue is QueueName.WEBHOOKS:
            skipped = result.get("delivered") is False
            record_webhook_delivery("skipped" if skipped else "delivered")

    def failed(self, dead_lettered: bool) -> None:
        self._attempts_failed.inc()
        if dead_lettered:
            self._dead_lettered.inc()
        else:
            self._retried.inc()
        if self.queue is QueueName.WEBHOOKS:
            record_webhook_delivery("dead_lettered" if dead_lettered else "failed")


class QueueGauges:
    """`errand_jobs{queue,state}` and `errand_redis_up`, from counts cached for `ttl_s`.

    Concurrent scrapes share one read, so a busy Prometheus costs Redis at most one
    round of `getJobCounts` per second.
    """

    def __init__(
        self,
        read_counts: Callable[[QueueName], Awaitable[dict[str, int]]],
        ttl_s: float = COUNTS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_counts = read_counts
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._read_at = -ttl_s
        self._counts: dict[QueueName, dict[str, int]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._read_at < self._ttl_s:
                return
            try:
                replies = await asyncio.gather(*(self._read_counts(q) for q in QueueName))
            except Exception as err:  # the scrape still answers, with errand_redis_up 0
                log.warning("metrics: queue counts unavailable: %s", type(err).__name__)
                self._counts = {}
            else:
                self._counts = dict(zip(QueueName, replies, strict=True))
            self._read_at = self._clock()

    def collect(self) -> Any:
        up = GaugeMetricFamily("errand_redis_up", "1 when the last queue count read worked.")
        up.add_metric([], 1 if self._counts else 0)
        yield up
        jobs = GaugeMetricFamily("errand_jobs", "Jobs per queue and state (failed = DLQ).",
                                 labels=["queue", "state"])
        for queue, raw in self._counts.items():
            for state, value in public_counts(raw).items():
                jobs.add_metric([str(queue), state], value)
        yield jobs

    async def render(self) -> bytes:
        """The whole `/metrics` body: this process's registry plus the queue gauges."""
        await self.refresh()
        return generate_latest(REGISTRY) + generate_latest(self.registry)


def public_counts(raw: dict[str, int]) -> dict[str, int]:
    """BullMQ's states folded into errand's: prioritized and paused jobs are waiting."""
    return {
        "waiting": raw.get("waiting", 0) + raw.get("prioritized", 0) + raw.get("paused", 0),
        "active": raw.get("active", 0),
        "delayed": raw.get("delayed", 0),
        "completed": raw.get("completed", 0),
        "failed": raw.get("failed", 0),
    }


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetricsMiddleware:
    """Pure ASGI middleware: counts requests by method, route template and status.

    The route template (`/jobs/{job_id}`) comes from the matched route Starlette
    leaves in the scope; a request no route matched is counted as `unmatched`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        HTTP_IN_FLIGHT.inc()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            HTTP_IN_FLIGHT.dec()
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


class WorkerMetricsServer:
    """The `/metrics` endpoint of one worker process (prometheus_client's own HTTP thread)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: Any = None

    def start(self) -> None:
        """Raises OSError, naming the address, when the port is taken."""
        try:
            self._server, _ = start_http_server(self.port, self.host, registry=REGISTRY)
        except OSError as err:
            raise OSError(f"cannot serve worker metrics on {self.host}:{self.port}: {err}") from err
        log.info("worker metrics on http://%s:%d/metrics", self.host, self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
